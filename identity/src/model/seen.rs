//! The events the graph has seen, by id: telling a new event from one delivered again costs
//! one probe into a table of eight bytes per event (where the event is among the graph's
//! events, and half its hash), not a map holding every event id again.

use kinfold_core::EventId;
use std::hash::BuildHasher;

/// Spreads the kept half of a hash over 64 bits again (hashbrown takes its buckets from the
/// low bits and its tags from the high ones), so that growing a table needs none of its
/// entries' keys.
pub(super) fn spread(half: u32) -> u64 {
    u64::from(half).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[derive(Debug, Clone, Default)]
pub(super) struct SeenEvents {
    /// (where the event is, the low half of its hash).
    table: hashbrown::HashTable<(u32, u32)>,
    hasher: foldhash::fast::RandomState,
}

impl SeenEvents {
    /// Where `event` is if it was seen before (`event_at` gives the event at a place);
    /// otherwise it is seen from now on, at `place`.
    pub(super) fn first_sight(
        &mut self,
        event: &EventId,
        place: usize,
        event_at: impl Fn(u32) -> EventId,
    ) -> Option<usize> {
        let half = self.hasher.hash_one(event) as u32;
        let place = u32::try_from(place).expect("fewer than 2^32 events");
        match self.table.entry(
            spread(half),
            |&(at, other)| other == half && event_at(at) == *event,
            |&(_, other)| spread(other),
        ) {
            hashbrown::hash_table::Entry::Occupied(seen) => Some(seen.get().0 as usize),
            hashbrown::hash_table::Entry::Vacant(new) => {
                new.insert((place, half));
                None
            }
        }
    }

    /// Marks `event` seen at `place`; it must not have been seen.
    pub(super) fn insert(&mut self, event: &EventId, place: usize) {
        let half = self.hasher.hash_one(event) as u32;
        let place = u32::try_from(place).expect("fewer than 2^32 events");
        self.table
            .insert_unique(spread(half), (place, half), |&(_, other)| spread(other));
    }
}

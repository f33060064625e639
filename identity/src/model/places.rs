//! Places by key: where an event is among the graph's inputs, where a customer is among its
//! customers. Each key is kept once, in its own vector; the index holds eight bytes per key
//! (the key's place and half its hash), not the key again, so that telling a new event from
//! one delivered again, or finding a customer by id, is one probe into a compact table.

use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

/// Spreads the kept half of a hash over 64 bits again (hashbrown takes its buckets from the
/// low bits and its tags from the high ones), so that growing a table needs none of its
/// entries' keys.
pub(super) fn spread(half: u32) -> u64 {
    u64::from(half).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The place of each key, found through `key_at` (the key at a place), which the owner of
/// the keys gives on each look-up. Keys are never removed: a place stays taken.
#[derive(Debug, Clone)]
pub(super) struct Places<K> {
    /// (the key's place, the low half of its hash).
    table: hashbrown::HashTable<(u32, u32)>,
    hasher: foldhash::fast::RandomState,
    key: PhantomData<fn(&K)>,
}

impl<K> Default for Places<K> {
    fn default() -> Self {
        Self {
            table: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            key: PhantomData,
        }
    }
}

impl<K: Hash + Eq> Places<K> {
    fn half(&self, key: &K) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    /// Where `key` is, if it has a place.
    pub(super) fn find(&self, key: &K, key_at: impl Fn(u32) -> K) -> Option<u32> {
        let half = self.half(key);
        self.table
            .find(spread(half), |&(at, other)| {
                other == half && key_at(at) == *key
            })
            .map(|&(at, _)| at)
    }

    /// Where `key` is if it had a place already; otherwise it is at `place` from now on.
    pub(super) fn first_sight(
        &mut self,
        key: &K,
        place: usize,
        key_at: impl Fn(u32) -> K,
    ) -> Option<u32> {
        let half = self.half(key);
        let place = u32::try_from(place).expect("fewer than 2^32 places");
        match self.table.entry(
            spread(half),
            |&(at, other)| other == half && key_at(at) == *key,
            |&(_, other)| spread(other),
        ) {
            hashbrown::hash_table::Entry::Occupied(seen) => Some(seen.get().0),
            hashbrown::hash_table::Entry::Vacant(new) => {
                new.insert((place, half));
                None
            }
        }
    }

    /// Puts `key` at `place`; it must have none yet.
    pub(super) fn insert(&mut self, key: &K, place: usize) {
        let half = self.half(key);
        let place = u32::try_from(place).expect("fewer than 2^32 places");
        self.table
            .insert_unique(spread(half), (place, half), |&(_, other)| spread(other));
    }
}

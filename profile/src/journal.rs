//! A customer's journal: their resolved events in event time (then event id), each once.
//!
//! The journal is what a profile is a fold of. An event delivered again (same event id) is
//! recognised and changes nothing, whatever time it claims; an event that sorts after every
//! event already there can be folded on top of the projection, and any other one (a late POS
//! upload) means folding the journal again. On a merge the survivor's journal takes both; on a
//! split each side's journal is made again from the events that now belong to it.

use kinfold_core::time::TimestampMicros;
use kinfold_core::{CanonicalEvent, EventId};
use std::collections::{BTreeMap, HashMap};

/// Where an event sorts in a journal: event time, then event id.
pub type JournalKey = (TimestampMicros, EventId);

/// The key of `event` in a journal.
pub fn journal_key(event: &CanonicalEvent) -> JournalKey {
    (event.event_time, event.event_id)
}

/// What adding an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The journal already held this event id: nothing changed.
    Duplicate,
    /// The event sorts after every other one: fold it on top.
    InOrder,
    /// The event sorts before one already there: fold the journal again.
    Late,
}

/// One customer's events, in journal order, each event id once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Journal {
    events: BTreeMap<JournalKey, CanonicalEvent>,
    times: HashMap<EventId, TimestampMicros>,
}

impl Journal {
    pub fn new() -> Self {
        Self::default()
    }

    /// A journal of `events` (duplicates dropped, the first one kept).
    pub fn of(events: impl IntoIterator<Item = CanonicalEvent>) -> Self {
        let mut journal = Self::new();
        for event in events {
            journal.add(event);
        }
        journal
    }

    /// Adds `event`, unless its id is there already.
    pub fn add(&mut self, event: CanonicalEvent) -> Added {
        if self.times.contains_key(&event.event_id) {
            return Added::Duplicate;
        }
        let key = journal_key(&event);
        let in_order = self
            .events
            .last_key_value()
            .is_none_or(|(last, _)| *last < key);
        self.times.insert(event.event_id, event.event_time);
        self.events.insert(key, event);
        if in_order {
            Added::InOrder
        } else {
            Added::Late
        }
    }

    /// Takes every event of `other` (a merge: the survivor's journal holds both).
    pub fn absorb(&mut self, other: Journal) {
        for event in other.events.into_values() {
            self.add(event);
        }
    }

    /// Removes the event `event_id` (it belongs to another customer now, after a split).
    pub fn remove(&mut self, event_id: &EventId) -> Option<CanonicalEvent> {
        let time = self.times.remove(event_id)?;
        self.events.remove(&(time, *event_id))
    }

    pub fn contains(&self, event_id: &EventId) -> bool {
        self.times.contains_key(event_id)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events in journal order.
    pub fn events(&self) -> impl DoubleEndedIterator<Item = &CanonicalEvent> {
        self.events.values()
    }

    /// The events that happened at or before `at`, in journal order.
    pub fn until(&self, at: TimestampMicros) -> impl Iterator<Item = &CanonicalEvent> {
        self.events
            .range(..=(at, EventId(uuid::Uuid::max())))
            .map(|(_, event)| event)
    }

    /// The last key, if any.
    pub fn last_key(&self) -> Option<JournalKey> {
        self.events.last_key_value().map(|(key, _)| *key)
    }
}

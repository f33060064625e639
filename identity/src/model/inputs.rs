//! The graph's inputs as it keeps them: per input, an entry of 24 bytes (the event's id, the
//! place of the customer it resolved to then, where its identifiers start), the places of
//! every event's identifiers in one run, and decisions by hand on the side. An event is an
//! [`Input`](super::Input) again when read; recording one touches none of its identifiers.

use super::chunked::Chunked;
use super::graph::Input;
use kinfold_core::EventId;

/// The `customer` of an entry that is a decision, not an event.
const DECISION: u32 = u32::MAX - 1;

#[derive(Debug, Clone, Copy)]
struct Entry {
    event_id: EventId,
    /// The place of the customer the event resolved to then ([`super::known::NOBODY`]:
    /// none), or [`DECISION`].
    customer: u32,
    /// Where the event's identifiers start in `located`.
    first: u32,
}

/// What input number `at` is.
pub(super) enum Recorded<'a> {
    /// An event: its id, and where the graph knows each of its identifiers.
    Observe {
        event_id: EventId,
        located: &'a [u32],
    },
    Decision(&'a Input),
}

#[derive(Debug, Clone, Default)]
pub(super) struct Inputs {
    entries: Chunked<Entry>,
    located: Vec<u32>,
    /// (input number, the decision), in order.
    decisions: Vec<(usize, Input)>,
}

impl Inputs {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Where the next event's identifiers go: push them, then [`Self::push_event`].
    pub(super) fn located_mut(&mut self) -> &mut Vec<u32> {
        &mut self.located
    }

    /// Records an event whose identifiers were pushed from `first` on (see
    /// [`Self::located_mut`]).
    pub(super) fn push_event(&mut self, event_id: EventId, customer: u32, first: usize) {
        assert!(customer != DECISION, "fewer than 2^32 - 2 customers");
        self.entries.push(Entry {
            event_id,
            customer,
            first: u32::try_from(first).expect("fewer than 2^32 identifiers in events"),
        });
    }

    pub(super) fn push_decision(&mut self, input: Input) {
        let at = self.entries.len();
        self.entries.push(Entry {
            event_id: EventId(uuid::Uuid::nil()),
            customer: DECISION,
            first: u32::try_from(self.located.len()).expect("fewer than 2^32 identifiers"),
        });
        self.decisions.push((at, input));
    }

    /// The id of the event at input `at`, which must be an event.
    pub(super) fn event_id(&self, at: usize) -> EventId {
        self.entries[at].event_id
    }

    /// The place of the customer that the event at input `at` resolved to.
    pub(super) fn customer(&self, at: usize) -> u32 {
        self.entries[at].customer
    }

    /// Input number `at`.
    pub(super) fn get(&self, at: usize) -> Recorded<'_> {
        let entry = self.entries[at];
        if entry.customer == DECISION {
            let nth = self
                .decisions
                .binary_search_by_key(&at, |(at, _)| *at)
                .expect("every decision entry has its decision");
            return Recorded::Decision(&self.decisions[nth].1);
        }
        let end = if at + 1 < self.entries.len() {
            self.entries[at + 1].first
        } else {
            u32::try_from(self.located.len()).expect("fewer than 2^32 identifiers")
        };
        Recorded::Observe {
            event_id: entry.event_id,
            located: &self.located[entry.first as usize..end as usize],
        }
    }

    /// Every event, in order: its id and the place of its customer then.
    pub(super) fn events(&self) -> impl Iterator<Item = (EventId, u32)> + '_ {
        self.entries
            .iter()
            .filter(|entry| entry.customer != DECISION)
            .map(|entry| (entry.event_id, entry.customer))
    }
}

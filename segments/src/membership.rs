//! Live membership: each segment's members as a compressed bitmap of customer slots, kept
//! exact by evaluating one customer whenever their profile changes and whenever a timer the
//! last evaluation set comes due (see `docs/segments.md`). Pure: the segment stage feeds it
//! events and the clock, and stores what it changes.

use crate::eval::{Subject, consented, evaluate};
use crate::rule::Rule;
use kinfold_core::EventId;
use kinfold_core::time::TimestampMicros;
use roaring::RoaringBitmap;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A customer's number in the bitmaps (the stage gives each customer one, densely).
pub type Slot = u32;

/// A segment's definition, at one version.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: String,
    pub version: u32,
    pub rule: Rule,
    /// The consent purpose the segment is for (marketing by SMS, ...): a customer without that
    /// consent granted is never a member, whatever the rule says.
    pub purpose: Option<String>,
}

/// Why membership was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The customer's profile changed with this event.
    Event(EventId),
    /// Time passed: the timer an earlier evaluation set came due.
    Timer,
    /// The segment was defined or changed, or population figures were refreshed.
    Refresh,
}

/// A customer entering or leaving a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub segment: String,
    pub version: u32,
    pub slot: Slot,
    /// Entered (else left).
    pub entered: bool,
    /// The instant it was evaluated at.
    pub at: TimestampMicros,
    pub cause: Cause,
}

/// Every segment's members and the timers that wake customers.
#[derive(Debug, Default, Clone)]
pub struct Memberships {
    /// Each segment with its members: one look-up finds both, and evaluating a customer walks
    /// them in order with none.
    segments: BTreeMap<String, Defined>,
    /// When each customer is to be evaluated again, and the same by time.
    wake_at: HashMap<Slot, TimestampMicros>,
    timers: BTreeSet<(TimestampMicros, Slot)>,
}

/// A segment and its members.
#[derive(Debug, Clone)]
struct Defined {
    segment: Segment,
    members: RoaringBitmap,
}

/// Whether `segment` has `subject` as a member now, and when that could change.
fn member(segment: &Segment, subject: &Subject<'_>) -> (bool, Option<TimestampMicros>) {
    let consented = consented(segment.purpose.as_deref(), subject.profile);
    let outcome = evaluate(&segment.rule, subject);
    (
        consented && outcome.holds == Some(true),
        outcome.next_change,
    )
}

impl Memberships {
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines `segment` (a new version replaces the one before). Its members are then those
    /// of the previous version until each customer is evaluated again: the stage follows a
    /// definition with a full pass ([`Self::evaluate`] for every customer, cause
    /// [`Cause::Refresh`]).
    pub fn define(&mut self, segment: Segment) {
        match self.segments.get_mut(&segment.id) {
            Some(defined) => defined.segment = segment,
            None => {
                self.segments.insert(
                    segment.id.clone(),
                    Defined {
                        segment,
                        members: RoaringBitmap::new(),
                    },
                );
            }
        }
    }

    /// Removes the segment `id` and its members.
    pub fn delete(&mut self, id: &str) -> Option<Segment> {
        self.segments.remove(id).map(|defined| defined.segment)
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values().map(|defined| &defined.segment)
    }

    /// The members of segment `id`.
    pub fn members(&self, id: &str) -> Option<&RoaringBitmap> {
        self.segments.get(id).map(|defined| &defined.members)
    }

    /// When `slot` is to be evaluated again with no event.
    pub fn wake_at(&self, slot: Slot) -> Option<TimestampMicros> {
        self.wake_at.get(&slot).copied()
    }

    /// The customers whose timers are due at `now`, earliest first.
    pub fn due(&self, now: TimestampMicros) -> Vec<(TimestampMicros, Slot)> {
        self.timers.range(..=(now, Slot::MAX)).copied().collect()
    }

    /// Evaluates customer `slot` (as `subject` has them, at `subject.now`) against every
    /// segment; returns who entered and left, and sets the customer's timer to the earliest
    /// instant any answer could change.
    pub fn evaluate(&mut self, slot: Slot, subject: &Subject<'_>, cause: Cause) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut wake: Option<TimestampMicros> = None;
        for Defined { segment, members } in self.segments.values_mut() {
            let (is_member, next) = member(segment, subject);
            if let Some(next) = next {
                wake = Some(wake.map_or(next, |wake| wake.min(next)));
            }
            let was_member = members.contains(slot);
            if is_member != was_member {
                if is_member {
                    members.insert(slot);
                } else {
                    members.remove(slot);
                }
                changes.push(Change {
                    segment: segment.id.clone(),
                    version: segment.version,
                    slot,
                    entered: is_member,
                    at: subject.now,
                    cause,
                });
            }
        }
        if let Some(old) = self.wake_at.remove(&slot) {
            self.timers.remove(&(old, slot));
        }
        if let Some(wake) = wake {
            self.wake_at.insert(slot, wake);
            self.timers.insert((wake, slot));
        }
        changes
    }

    /// Takes `slot` out of every segment and drops its timer (an erased or absorbed customer);
    /// returns the exits, at `at`.
    pub fn forget(&mut self, slot: Slot, at: TimestampMicros, cause: Cause) -> Vec<Change> {
        let mut changes = Vec::new();
        for Defined { segment, members } in self.segments.values_mut() {
            if members.remove(slot) {
                changes.push(Change {
                    segment: segment.id.clone(),
                    version: segment.version,
                    slot,
                    entered: false,
                    at,
                    cause,
                });
            }
        }
        if let Some(old) = self.wake_at.remove(&slot) {
            self.timers.remove(&(old, slot));
        }
        changes
    }

    /// Makes the timer of `slot` come due no later than `at` (a trigger's rule could change
    /// its answer then).
    pub fn wake_no_later_than(&mut self, slot: Slot, at: TimestampMicros) {
        if self.wake_at(slot).is_none_or(|wake| at < wake) {
            self.restore_timer(slot, at);
        }
    }

    /// Puts `slot` among the members of segment `id` as stored (when the stage loads); a
    /// segment no longer defined is ignored.
    pub fn restore_member(&mut self, id: &str, slot: Slot) {
        if let Some(Defined { members, .. }) = self.segments.get_mut(id) {
            members.insert(slot);
        }
    }

    /// Sets the timer of `slot` as stored.
    pub fn restore_timer(&mut self, slot: Slot, at: TimestampMicros) {
        if let Some(old) = self.wake_at.insert(slot, at) {
            self.timers.remove(&(old, slot));
        }
        self.timers.insert((at, slot));
    }
}

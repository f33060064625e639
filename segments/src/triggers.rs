//! Triggers: a rule that, when a customer comes to meet it, emits one event for the systems
//! that send coupons and messages, once per customer per period (see `docs/segments.md`).
//! Pure: the segment stage evaluates customers as for segments and stores what fired.
//!
//! - Each firing has a deterministic id (trigger, customer, period), so a firing emitted twice,
//!   by a restart between emitting and recording it, is recognisable downstream, and the
//!   record of fired ids keeps it from being emitted again.
//! - A firing is only for the present: an evaluation at an instant more than the grace before
//!   the wall clock (a replay of history, a timer long overdue) fires nothing, so rebuilding
//!   the projections never sends last year's birthday coupon.

use crate::eval::{Subject, birthday_in, birthday_of, consented, evaluate, open_coupons, today};
use crate::rule::Rule;
use chrono::Datelike;
use kinfold_core::time::TimestampMicros;
use std::collections::BTreeSet;

/// Which occurrence of a trigger a firing is for: at most one firing per customer per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The birthday the window is about: one a year (a window that opens in late December
    /// belongs to January's birthday).
    Birthday,
    /// The customer's last purchase: one per quiet spell after it ("no purchase in 30 days").
    LastPurchase,
    /// Once ever.
    Once,
    /// Each coupon: one firing per coupon, the next open one to expire ("your coupon expires
    /// tomorrow").
    Coupon,
}

/// A trigger's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub id: String,
    pub rule: Rule,
    pub period: Period,
    /// A consent purpose the trigger's messages need (granted), if any.
    pub purpose: Option<String>,
}

/// One firing, to emit to `triggers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// From the trigger, the customer and the period: the same firing always has the same id.
    pub id: uuid::Uuid,
    pub trigger: String,
    pub customer: String,
    /// The period, as text (`birthday:2026`, `last_purchase:<micros>`, `once`).
    pub period: String,
    pub at: TimestampMicros,
}

/// The namespace of firing ids (a fixed random UUID).
const FIRING_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x3c9e_51d2_7a40_4b8f_9e61_0d2f_a8b5_77c3);

/// How long after the wall clock an evaluation may lag and still fire.
pub const GRACE_MICROS: i64 = 6 * 3_600_000_000;

/// The period `trigger` would fire for, for `subject` now; `None` if there is none to fire for
/// (no birthday, no purchase).
fn period_key(period: Period, subject: &Subject<'_>) -> Option<String> {
    match period {
        Period::Once => Some("once".to_owned()),
        // The next open coupon to expire: the one a rule about expiring coupons is about
        // first. Two in its window at once fire one after the other, the second once the
        // first has expired.
        Period::Coupon => open_coupons(subject)
            .into_iter()
            .next()
            .map(|(_, coupon)| format!("coupon:{coupon}")),
        Period::LastPurchase => subject
            .profile
            .overall
            .last_purchase
            .map(|last| format!("last_purchase:{last}")),
        Period::Birthday => {
            let (birthday, today) = (birthday_of(subject.profile)?, today(subject)?);
            // The birthday on or after today (the one a window before it is for).
            let this_year = birthday_in(today.year(), birthday)?;
            let year = if this_year >= today {
                today.year()
            } else {
                today.year() + 1
            };
            Some(format!("birthday:{year}"))
        }
    }
}

/// What has fired: the ids, which the stage stores with its log positions.
#[derive(Debug, Default, Clone)]
pub struct Fired {
    ids: BTreeSet<uuid::Uuid>,
}

impl Fired {
    pub fn new() -> Self {
        Self::default()
    }

    /// The record as it was stored.
    pub fn from_ids(ids: impl IntoIterator<Item = uuid::Uuid>) -> Self {
        Self {
            ids: ids.into_iter().collect(),
        }
    }

    pub fn ids(&self) -> impl Iterator<Item = &uuid::Uuid> {
        self.ids.iter()
    }

    pub fn contains(&self, id: &uuid::Uuid) -> bool {
        self.ids.contains(id)
    }

    /// Evaluates `trigger` for `customer` (as `subject` has them at `subject.now`) with the
    /// wall clock at `wall_clock`: the firing, if the rule holds, its consent is granted, its
    /// period has not fired yet, and the evaluation is of the present.
    pub fn evaluate(
        &mut self,
        trigger: &Trigger,
        customer: &str,
        subject: &Subject<'_>,
        wall_clock: TimestampMicros,
    ) -> Option<Firing> {
        self.evaluate_timed(trigger, customer, subject, wall_clock)
            .0
    }

    /// [`Self::evaluate`], with the next instant the trigger's rule could change its answer
    /// (when to evaluate the customer again with no event).
    pub fn evaluate_timed(
        &mut self,
        trigger: &Trigger,
        customer: &str,
        subject: &Subject<'_>,
        wall_clock: TimestampMicros,
    ) -> (Option<Firing>, Option<TimestampMicros>) {
        let outcome = evaluate(&trigger.rule, subject);
        let firing = (subject.now >= wall_clock - GRACE_MICROS
            && consented(trigger.purpose.as_deref(), subject.profile)
            && outcome.holds == Some(true))
        .then(|| self.fire(trigger, customer, subject))
        .flatten();
        (firing, outcome.next_change)
    }

    /// The firing of `trigger`'s period for `customer`, unless it fired already.
    fn fire(&mut self, trigger: &Trigger, customer: &str, subject: &Subject<'_>) -> Option<Firing> {
        let period = period_key(trigger.period, subject)?;
        let id = uuid::Uuid::new_v5(
            &FIRING_NAMESPACE,
            format!("{}\u{0}{customer}\u{0}{period}", trigger.id).as_bytes(),
        );
        if !self.ids.insert(id) {
            return None;
        }
        Some(Firing {
            id,
            trigger: trigger.id.clone(),
            customer: customer.to_owned(),
            period,
            at: subject.now,
        })
    }
}

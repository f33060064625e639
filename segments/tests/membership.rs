//! Live membership against a full re-evaluation: after any random sequence of events (late
//! ones too) and clock advances, with each customer evaluated only when an event of theirs
//! arrives or their timer comes due, every segment's members are exactly those that
//! evaluating every rule for every customer at the current instant gives; and a segment for a
//! consent purpose never holds a customer without that consent.

mod common;

use common::{member, random_birthday, random_rule, till, view, with_subject};
use kinfold_core::CanonicalEvent;
use kinfold_profile::fold::DAY_MICROS;
use kinfold_segments::eval::evaluate;
use kinfold_segments::membership::{Cause, Memberships, Segment, Slot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const CUSTOMERS: Slot = 6;
const PURPOSE: &str = "marketing_sms";

fn random_event(rng: &mut StdRng, id: u128, time: i64) -> CanonicalEvent {
    let sku = ["a", "b", "c"][rng.random_range(0..3)];
    match rng.random_range(0..5) {
        0 => view(id, time, sku),
        1 => member(
            id,
            time,
            json!({
                "event_type": if rng.random_bool(0.6) { "CONSENT_GRANTED" } else { "CONSENT_WITHDRAWN" },
                "consent_purpose": PURPOSE,
            }),
        ),
        2 => random_birthday(rng, id, time),
        _ => {
            let store = format!("s{}", rng.random_range(1..3));
            till(
                id,
                time,
                rng.random_bool(0.15),
                (sku, "tea", &store),
                rng.random_range(100..5_000),
            )
        }
    }
}

/// Customer `slot`'s membership changes as of `at` (every event of theirs has happened by then).
fn evaluate_at(
    memberships: &mut Memberships,
    journals: &[Vec<CanonicalEvent>],
    slot: Slot,
    at: i64,
    cause: Cause,
) -> usize {
    with_subject(&journals[slot as usize], at, |subject| {
        memberships.evaluate(slot, subject, cause).len()
    })
}

/// Every rule for every customer at `now`, from scratch.
fn full(segments: &[Segment], journals: &[Vec<CanonicalEvent>], now: i64) -> Vec<Vec<Slot>> {
    segments
        .iter()
        .map(|segment| {
            (0..CUSTOMERS)
                .filter(|&slot| {
                    with_subject(&journals[slot as usize], now, |subject| {
                        let consented = segment.purpose.as_ref().is_none_or(|purpose| {
                            subject
                                .profile
                                .consent
                                .get(purpose)
                                .is_some_and(|consent| consent.granted)
                        });
                        consented && evaluate(&segment.rule, subject).holds == Some(true)
                    })
                })
                .collect()
        })
        .collect()
}

#[test]
fn maintained_membership_equals_a_full_re_evaluation() {
    let mut rng = StdRng::seed_from_u64(2026);
    let (mut changes, mut timers_fired) = (0, 0);
    for case in 0..120 {
        let segments: Vec<Segment> = (0..4)
            .map(|at| Segment {
                id: format!("s{at}"),
                version: 1,
                rule: random_rule(&mut rng),
                purpose: (at == 0).then(|| PURPOSE.to_owned()),
            })
            .collect();
        let mut memberships = Memberships::new();
        for segment in &segments {
            memberships.define(segment.clone());
        }
        let mut journals: Vec<Vec<CanonicalEvent>> = vec![Vec::new(); CUSTOMERS as usize];
        let mut clock = common::START;
        for slot in 0..CUSTOMERS {
            evaluate_at(&mut memberships, &journals, slot, clock, Cause::Refresh);
        }
        let mut next_id = 0u128;
        for step in 0..50 {
            if rng.random_bool(0.6) {
                // An event, possibly late (up to 20 days before the clock).
                let slot = rng.random_range(0..CUSTOMERS);
                let time = clock - rng.random_range(0..20 * DAY_MICROS);
                next_id += 1;
                let event = random_event(&mut rng, next_id, time);
                let id = event.event_id;
                journals[slot as usize].push(event);
                changes += evaluate_at(&mut memberships, &journals, slot, clock, Cause::Event(id));
            } else {
                // Time passes: each timer fires at its instant, in order.
                let until = clock + rng.random_range(3_600_000_000..40 * DAY_MICROS);
                while let Some(&(at, slot)) = memberships.due(until).first() {
                    timers_fired += 1;
                    changes += evaluate_at(&mut memberships, &journals, slot, at, Cause::Timer);
                }
                clock = until;
            }
            let expected = full(&segments, &journals, clock);
            for (segment, expected) in segments.iter().zip(expected) {
                let got: Vec<Slot> = memberships
                    .members(&segment.id)
                    .expect("defined")
                    .iter()
                    .collect();
                assert_eq!(
                    got, expected,
                    "case {case} step {step}: segment `{}` ({:?}) at {clock}",
                    segment.rule, segment.purpose
                );
            }
        }
    }
    assert!(
        changes > 1_000 && timers_fired > 1_000,
        "{changes} changes, {timers_fired} timers"
    );
}

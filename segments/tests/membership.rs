//! Live membership against a full re-evaluation: after any random sequence of events (late
//! ones too) and clock advances, with each customer evaluated only when an event of theirs
//! arrives or their timer comes due, every segment's members are exactly those that
//! evaluating every rule for every customer at the current instant gives; and a segment for a
//! consent purpose never holds a customer without that consent.

use kinfold_core::event::EventBody;
use kinfold_core::{CanonicalEvent, EventId};
use kinfold_profile::fold::DAY_MICROS;
use kinfold_profile::{Journal, ProfileRules, fold};
use kinfold_segments::eval::{Subject, evaluate};
use kinfold_segments::membership::{Cause, Memberships, Segment, Slot};
use kinfold_segments::rule::{Rule, parse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600_000_000;
const CUSTOMERS: Slot = 6;
const PURPOSE: &str = "marketing_sms";

fn body(value: serde_json::Value) -> EventBody {
    serde_json::from_value(value).expect("an event body")
}

fn random_event(rng: &mut StdRng, id: u128, time: i64) -> CanonicalEvent {
    let sku = ["a", "b", "c"][rng.random_range(0..3)];
    let body = match rng.random_range(0..5) {
        0 => body(json!({"kinfold.wechat.WechatEvent": {
            "event_type": "VIEW", "app_id": "wx1", "occurred_at": time, "sku": sku,
        }})),
        1 => body(json!({"kinfold.membership.MembershipEvent": {
            "event_type": if rng.random_bool(0.6) { "CONSENT_GRANTED" } else { "CONSENT_WITHDRAWN" },
            "brand": "b", "member_card": "m", "event_ref": id.to_string(), "occurred_at": time,
            "consent_purpose": PURPOSE,
        }})),
        2 => body(json!({"kinfold.membership.MembershipEvent": {
            "event_type": "PROFILE_UPDATED", "brand": "b", "member_card": "m",
            "event_ref": id.to_string(), "occurred_at": time,
            "birthday": format!("1990-{:02}-{:02}", rng.random_range(1..13), rng.random_range(1..29)),
        }})),
        _ => {
            let price = rng.random_range(100..5_000);
            body(json!({"kinfold.pos.PosTransaction": {
                "kind": if rng.random_bool(0.85) { "SALE" } else { "RETURN" },
                "brand": "b", "store_id": format!("s{}", rng.random_range(1..3)), "till_id": "t",
                "serial": id.to_string(), "business_day": "2026-01-01",
                "occurred_at_local": "2026-01-01T10:00:00", "currency": "CNY",
                "total_minor": price, "tenders": [],
                "lines": [{"sku": sku, "category": "tea", "quantity": 1, "unit_price_minor": price, "discount_minor": 0}],
            }}))
        }
    };
    CanonicalEvent {
        event_id: EventId(uuid::Uuid::from_u128(id)),
        event_type: "test".to_owned(),
        event_time: time,
        receive_time: time,
        origin: "test".to_owned(),
        identifiers: Vec::new(),
        body,
    }
}

const ATOMS: &[&str] = &[
    "last_purchase_at < now - 30d",
    "first_purchase_at >= now - 2w + 12h",
    r#"count(type = "view", within = 14d) >= 2"#,
    r#"bought(sku = "a", within = 30d)"#,
    r#"spend(category = "tea", within = 60d) > 20"#,
    "birthday_within(7d)",
    "recency_days >= 10",
    "orders >= 2",
    "consent.marketing_sms",
];

fn random_rule(rng: &mut StdRng) -> Rule {
    let atom = |rng: &mut StdRng| parse(ATOMS[rng.random_range(0..ATOMS.len())]).expect("atom");
    match rng.random_range(0..4) {
        0 => atom(rng),
        1 => Rule::Not(Box::new(atom(rng))),
        2 => Rule::And(vec![atom(rng), atom(rng)]),
        _ => Rule::Or(vec![atom(rng), Rule::Not(Box::new(atom(rng)))]),
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
    let journal = Journal::of(journals[slot as usize].iter().cloned());
    let profile = fold(journal.events()).profile(&ProfileRules::default_rules(), at);
    let subject = Subject {
        profile: &profile,
        journal: &journal,
        now: at,
        time_zone: chrono_tz::Asia::Shanghai,
        population: None,
    };
    memberships.evaluate(slot, &subject, cause).len()
}

/// Every rule for every customer at `now`, from scratch.
fn full(segments: &[Segment], journals: &[Vec<CanonicalEvent>], now: i64) -> Vec<Vec<Slot>> {
    segments
        .iter()
        .map(|segment| {
            (0..CUSTOMERS)
                .filter(|&slot| {
                    let journal = Journal::of(journals[slot as usize].iter().cloned());
                    let profile =
                        fold(journal.events()).profile(&ProfileRules::default_rules(), now);
                    let consented = segment.purpose.as_ref().is_none_or(|purpose| {
                        profile
                            .consent
                            .get(purpose)
                            .is_some_and(|consent| consent.granted)
                    });
                    let subject = Subject {
                        profile: &profile,
                        journal: &journal,
                        now,
                        time_zone: chrono_tz::Asia::Shanghai,
                        population: None,
                    };
                    consented && evaluate(&segment.rule, &subject).holds == Some(true)
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
        let mut clock = START;
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

//! Events, rules and evaluation for the segment tests.

#![allow(dead_code)]

use kinfold_core::event::EventBody;
use kinfold_core::{CanonicalEvent, EventId};
use kinfold_profile::{Journal, ProfileRules, fold};
use kinfold_segments::eval::{Stores, Subject};
use kinfold_segments::rule::{Rule, parse};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

/// 2026-01-01T00:00:00Z.
pub const START: i64 = 1_767_225_600_000_000;

pub fn event(id: u128, time: i64, body: serde_json::Value) -> CanonicalEvent {
    CanonicalEvent {
        event_id: EventId(uuid::Uuid::from_u128(id)),
        event_type: "test".to_owned(),
        event_time: time,
        receive_time: time,
        origin: "test".to_owned(),
        identifiers: Vec::new(),
        body: serde_json::from_value::<EventBody>(body).expect("an event body"),
    }
}

/// A till sale (`return_`: a return) of one line.
pub fn till(
    id: u128,
    time: i64,
    return_: bool,
    (sku, category, store): (&str, &str, &str),
    price: i64,
) -> CanonicalEvent {
    event(
        id,
        time,
        json!({"kinfold.pos.PosTransaction": {
            "kind": if return_ { "RETURN" } else { "SALE" },
            "brand": "b", "store_id": store, "till_id": "t", "serial": id.to_string(),
            "business_day": "2026-01-01", "occurred_at_local": "2026-01-01T10:00:00",
            "currency": "CNY", "total_minor": price, "tenders": [],
            "lines": [{"sku": sku, "category": category, "quantity": 1, "unit_price_minor": price, "discount_minor": 0}],
        }}),
    )
}

pub fn sale(
    id: u128,
    time: i64,
    sku: &str,
    category: &str,
    store: &str,
    price: i64,
) -> CanonicalEvent {
    till(id, time, false, (sku, category, store), price)
}

/// A WeChat view of a product.
pub fn view(id: u128, time: i64, sku: &str) -> CanonicalEvent {
    event(
        id,
        time,
        json!({"kinfold.wechat.WechatEvent": {
            "event_type": "VIEW", "app_id": "wx1", "occurred_at": time, "sku": sku,
        }}),
    )
}

/// A membership event with the fields of `extra` (its `event_type` among them).
pub fn member(id: u128, time: i64, extra: serde_json::Value) -> CanonicalEvent {
    let mut body = json!({
        "brand": "b", "member_card": "m1", "event_ref": id.to_string(), "occurred_at": time,
    });
    body.as_object_mut()
        .expect("an object")
        .extend(extra.as_object().expect("an object").clone());
    event(
        id,
        time,
        json!({"kinfold.membership.MembershipEvent": body}),
    )
}

pub fn birthday(id: u128, time: i64, date: &str) -> CanonicalEvent {
    member(
        id,
        time,
        json!({"event_type": "PROFILE_UPDATED", "birthday": date}),
    )
}

/// A profile update with a random birthday.
pub fn random_birthday(rng: &mut StdRng, id: u128, time: i64) -> CanonicalEvent {
    let date = format!(
        "1990-{:02}-{:02}",
        rng.random_range(1..13),
        rng.random_range(1..29)
    );
    birthday(id, time, &date)
}

/// Conditions over time windows, calendars, facts and consent, to combine into random rules
/// (none over the population).
pub const ATOMS: &[&str] = &[
    "last_purchase_at < now - 30d",
    "first_purchase_at >= now - 2w + 12h",
    r#"count(type = "view", within = 14d) >= 2"#,
    r#"bought(sku = "a", within = 30d)"#,
    r#"spend(category = "tea", within = 60d) > 20"#,
    r#"count(type = "purchase", store = "s1") >= 2"#,
    "birthday_within(7d)",
    "recency_days >= 10",
    "orders >= 2",
    "consent.marketing_sms",
];

pub fn random_rule(rng: &mut StdRng) -> Rule {
    let atom = |rng: &mut StdRng| parse(ATOMS[rng.random_range(0..ATOMS.len())]).expect("atom");
    match rng.random_range(0..4) {
        0 => atom(rng),
        1 => Rule::Not(Box::new(atom(rng))),
        2 => Rule::And(vec![atom(rng), atom(rng)]),
        _ => Rule::Or(vec![atom(rng), Rule::Not(Box::new(atom(rng)))]),
    }
}

/// `f` of the customer whose journal holds `events` up to `now` (later ones have not
/// happened yet), as of `now`, living in Shanghai.
pub fn with_subject<'e, T>(
    events: impl IntoIterator<Item = &'e CanonicalEvent>,
    now: i64,
    f: impl FnOnce(&Subject<'_>) -> T,
) -> T {
    let journal = Journal::of(events.into_iter().filter(|e| e.event_time <= now).cloned());
    let profile = fold(journal.events()).profile(&ProfileRules::default_rules(), now);
    f(&Subject {
        profile: &profile,
        journal: &journal,
        now,
        time_zone: chrono_tz::Asia::Shanghai,
        population: None,
        stores: None,
    })
}

/// `f` of the customer whose journal holds every one of `events` (later ones too: evaluation
/// must leave them out), as of `now`, living in Shanghai, with `stores`.
pub fn with_subject_and_stores<T>(
    events: &[CanonicalEvent],
    now: i64,
    stores: Option<&Stores>,
    f: impl FnOnce(&Subject<'_>) -> T,
) -> T {
    let journal = Journal::of(events.iter().cloned());
    let profile = fold(journal.events()).profile(&ProfileRules::default_rules(), now);
    f(&Subject {
        profile: &profile,
        journal: &journal,
        now,
        time_zone: chrono_tz::Asia::Shanghai,
        population: None,
        stores,
    })
}

//! Triggers over time with a controllable clock: a birthday coupon fires once, seven days
//! before the birthday, every year; not again after a restart; not for last year's birthday
//! while history is replayed; never without consent. A lapse trigger fires once per quiet spell.

mod common;

use common::{member, with_subject};
use kinfold_core::CanonicalEvent;
use kinfold_profile::fold::DAY_MICROS;
use kinfold_segments::rule::parse;
use kinfold_segments::triggers::{Fired, Firing, Period, Trigger};
use serde_json::json;

/// 2026-01-01T12:00:00+08:00.
const START: i64 = common::START + 4 * HOUR;
const HOUR: i64 = 3_600_000_000;

fn sale(id: u128, time: i64, price: i64) -> CanonicalEvent {
    common::sale(id, time, "a", "tea", "s1", price)
}

fn fire(
    fired: &mut Fired,
    trigger: &Trigger,
    events: &[CanonicalEvent],
    at: i64,
    wall_clock: i64,
) -> Option<Firing> {
    with_subject(events, at, |subject| {
        fired.evaluate(trigger, "customer-1", subject, wall_clock)
    })
}

fn birthday_coupon() -> Trigger {
    Trigger {
        id: "birthday-coupon".to_owned(),
        rule: parse("birthday_within(7d)").expect("parses"),
        period: Period::Birthday,
        purpose: Some("marketing_sms".to_owned()),
    }
}

fn shanghai_day(at: i64) -> String {
    chrono::DateTime::from_timestamp_micros(at)
        .expect("an instant")
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        .to_string()
}

#[test]
fn a_birthday_coupon_fires_once_a_week_before_each_birthday() {
    let trigger = birthday_coupon();
    let events = vec![
        member(
            1,
            START - DAY_MICROS,
            json!({"event_type": "REGISTERED", "birthday": "1990-03-15"}),
        ),
        member(
            2,
            START - DAY_MICROS,
            json!({"event_type": "CONSENT_GRANTED", "consent_purpose": "marketing_sms"}),
        ),
    ];
    // The clock walks two years, every six hours; the stage evaluates the customer each time.
    let mut fired = Fired::new();
    let mut firings = Vec::new();
    let mut at = START;
    while at < START + 730 * DAY_MICROS {
        firings.extend(fire(&mut fired, &trigger, &events, at, at));
        at += 6 * HOUR;
    }
    let days: Vec<(String, String)> = firings
        .iter()
        .map(|firing| (shanghai_day(firing.at), firing.period.clone()))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-03-08".to_owned(), "birthday:2026".to_owned()),
            ("2027-03-08".to_owned(), "birthday:2027".to_owned()),
        ]
    );

    // A restart in the window: the fired ids come back from the store, nothing fires again.
    let in_window = START + 70 * DAY_MICROS; // 2026-03-12
    let mut restarted = Fired::from_ids(fired.ids().copied());
    assert_eq!(
        fire(&mut restarted, &trigger, &events, in_window, in_window),
        None
    );
    // The same firing has the same id wherever it is worked out.
    let again = fire(&mut Fired::new(), &trigger, &events, in_window, in_window).expect("fires");
    assert_eq!(again.id, firings[0].id);

    // A replay in 2027 of 2026's history: the evaluations at 2026 instants fire nothing, even
    // with the record of fired ids lost.
    let wall_clock = START + 400 * DAY_MICROS;
    let mut replaying = Fired::new();
    let mut at = START;
    while at < wall_clock - DAY_MICROS {
        assert_eq!(
            fire(&mut replaying, &trigger, &events, at, wall_clock),
            None,
            "at {at}"
        );
        at += 6 * HOUR;
    }

    // Without consent, no coupon.
    let withdrawn = [
        events[0].clone(),
        member(
            3,
            START,
            json!({"event_type": "CONSENT_WITHDRAWN", "consent_purpose": "marketing_sms"}),
        ),
    ];
    assert_eq!(
        fire(
            &mut Fired::new(),
            &trigger,
            &withdrawn,
            in_window,
            in_window
        ),
        None
    );
}

#[test]
fn a_lapse_trigger_fires_once_per_quiet_spell() {
    let trigger = Trigger {
        id: "high-value-lapse".to_owned(),
        rule: parse("net_spend >= 1000 and last_purchase_at < now - 30d").expect("parses"),
        period: Period::LastPurchase,
        purpose: None,
    };
    let mut events = vec![sale(1, START, 150_000)];
    let mut fired = Fired::new();
    let mut firings = Vec::new();
    let mut at = START;
    while at < START + 200 * DAY_MICROS {
        if at == START + 100 * DAY_MICROS {
            events.push(sale(2, at, 20_000));
        }
        firings.extend(fire(&mut fired, &trigger, &events, at, at));
        at += 6 * HOUR;
    }
    let days: Vec<String> = firings
        .iter()
        .map(|firing| shanghai_day(firing.at))
        .collect();
    // 30 quiet days after each purchase (strictly more than 30 days: the next evaluation).
    assert_eq!(days, ["2026-01-31", "2026-05-11"]);
    assert_ne!(firings[0].id, firings[1].id);
}

fn coupon(
    id: u128,
    time: i64,
    event_type: &str,
    coupon: &str,
    expires: Option<i64>,
) -> CanonicalEvent {
    let mut extra = json!({"event_type": event_type, "coupon_id": coupon});
    if let Some(expires) = expires {
        extra["coupon_expires_at"] = json!(expires);
    }
    member(id, time, extra)
}

#[test]
fn a_coupon_reminder_fires_once_a_day_before_each_open_coupon_expires() {
    let trigger = Trigger {
        id: "coupon-expiring".to_owned(),
        rule: parse("coupon_expiring_within(24h)").expect("parses"),
        period: Period::Coupon,
        purpose: None,
    };
    let day = DAY_MICROS;
    let events = vec![
        // A expires on day 10, B six hours later; C is redeemed before its window opens.
        coupon(1, START, "COUPON_ISSUED", "A", Some(START + 10 * day)),
        coupon(
            2,
            START + day,
            "COUPON_ISSUED",
            "B",
            Some(START + 10 * day + 6 * HOUR),
        ),
        coupon(3, START + day, "COUPON_ISSUED", "C", Some(START + 20 * day)),
        coupon(4, START + 15 * day, "COUPON_REDEEMED", "C", None),
    ];
    // The next change, seen on day 1: A's window opening.
    let next = with_subject(&events, START + day, |subject| {
        kinfold_segments::eval::evaluate(&trigger.rule, subject).next_change
    });
    assert_eq!(next, Some(START + 9 * day));
    let mut fired = Fired::new();
    let mut firings = Vec::new();
    let mut at = START;
    while at < START + 25 * day {
        firings.extend(fire(&mut fired, &trigger, &events, at, at));
        at += HOUR;
    }
    let seen: Vec<(i64, String)> = firings
        .iter()
        .map(|firing| (firing.at, firing.period.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            // A's window opens a day before it expires.
            (START + 9 * day, "coupon:A".to_owned()),
            // B's window opened while A was the next to expire: B's reminder follows A's
            // expiry, still before B's own.
            (START + 10 * day, "coupon:B".to_owned()),
        ]
    );
}

//! Evaluating rules for one customer as time passes: the dormant segment leaves on a purchase
//! and comes back on the 90th quiet day; and for random journals and rules, nothing flips
//! before the instant the evaluation says it could (the timer that wakes the customer), and
//! window counts agree with a count written here.

mod common;

use common::{START, birthday, random_birthday, random_rule, sale, view, with_subject};
use kinfold_core::CanonicalEvent;
use kinfold_core::event::EventBody;
use kinfold_profile::fold::DAY_MICROS;
use kinfold_segments::eval::{Outcome, evaluate};
use kinfold_segments::rule::{Rule, parse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The rule for the customer whose journal is `events`, at `now`.
fn at(rule: &Rule, events: &[CanonicalEvent], now: i64) -> Outcome {
    with_subject(events, now, |subject| evaluate(rule, subject))
}

#[test]
fn dormant_leaves_on_a_purchase_and_enters_on_the_90th_quiet_day() {
    let dormant = parse("last_purchase_at < now - 90d").expect("parses");
    let first = START;
    let mut events = vec![sale(1, first, "a", "tea", "s1", 1000)];
    let day_after = at(&dormant, &events, first + DAY_MICROS);
    assert_eq!(day_after.holds, Some(false));
    // Strictly before `now - 90d`: it enters one microsecond after the 90th day ends.
    let enters = first + 90 * DAY_MICROS + 1;
    assert_eq!(day_after.next_change, Some(enters));
    assert_eq!(at(&dormant, &events, enters - 1).holds, Some(false));
    assert_eq!(at(&dormant, &events, enters).holds, Some(true));
    // A purchase on day 100: out, until day 190.
    let second = first + 100 * DAY_MICROS;
    events.push(sale(2, second, "b", "tea", "s1", 500));
    let after = at(&dormant, &events, second);
    assert_eq!(after.holds, Some(false));
    assert_eq!(after.next_change, Some(second + 90 * DAY_MICROS + 1));
    // No purchase at all: unknown, never a member.
    assert_eq!(at(&dormant, &[], first).holds, None);
    assert_eq!(
        at(
            &parse("not last_purchase_at < now - 90d").expect("parses"),
            &[],
            first
        )
        .holds,
        None
    );
}

#[test]
fn a_birthday_window_opens_seven_days_before_in_the_customers_time_zone() {
    let rule = parse("birthday_within(7d)").expect("parses");
    let events = vec![birthday(1, START, "1990-03-15")];
    // 2026-03-08T00:00 in Shanghai is 2026-03-07T16:00Z.
    let opens = 1_772_899_200_000_000;
    let before = at(&rule, &events, opens - 3_600_000_000);
    assert_eq!(before.holds, Some(false));
    assert_eq!(before.next_change, Some(opens));
    assert_eq!(at(&rule, &events, opens).holds, Some(true));
    // It closes when the birthday (in Shanghai) is over: 2026-03-16T00:00+08.
    let closes = opens + 8 * DAY_MICROS;
    let during = at(&rule, &events, opens + DAY_MICROS);
    assert_eq!(during.next_change, Some(closes));
    assert_eq!(at(&rule, &events, closes - 1).holds, Some(true));
    assert_eq!(at(&rule, &events, closes).holds, Some(false));
}

const SKUS: [(&str, &str); 3] = [("a", "tea"), ("b", "tea"), ("c", "cups")];

fn journal(rng: &mut StdRng) -> Vec<CanonicalEvent> {
    let mut events = Vec::new();
    for id in 0..rng.random_range(0..12u128) {
        let time = START + rng.random_range(0..120 * DAY_MICROS);
        let (sku, category) = SKUS[rng.random_range(0..SKUS.len())];
        events.push(match rng.random_range(0..3) {
            0 => view(id, time, sku),
            1 => random_birthday(rng, id, time),
            _ => sale(
                id,
                time,
                sku,
                category,
                &format!("s{}", rng.random_range(1..3)),
                rng.random_range(100..5_000),
            ),
        });
    }
    events
}

#[test]
fn nothing_flips_before_the_next_change_and_window_counts_agree() {
    let mut rng = StdRng::seed_from_u64(6);
    let views_in_window = parse(r#"count(type = "view", within = 14d) >= 2"#).expect("parses");
    let mut flips_seen = 0;
    for case in 0..400 {
        let events = journal(&mut rng);
        let rule = random_rule(&mut rng);
        let now = START + rng.random_range(0..150 * DAY_MICROS);
        // Events in the future have not happened: the journal is as of `now`, and later
        // instants see no new event (the timer's promise is about time alone).
        let past: Vec<CanonicalEvent> = events
            .iter()
            .filter(|e| e.event_time <= now)
            .cloned()
            .collect();
        let first = at(&rule, &past, now);
        let horizon = first
            .next_change
            .unwrap_or(now + 200 * DAY_MICROS)
            .min(now + 200 * DAY_MICROS);
        let mut probes: Vec<i64> = (0..40)
            .map(|_| rng.random_range(now..horizon.max(now + 1)))
            .collect();
        probes.push(horizon - 1);
        for probe in probes.into_iter().filter(|&t| t >= now && t < horizon) {
            assert_eq!(
                at(&rule, &past, probe).holds,
                first.holds,
                "case {case}: `{rule}` flipped at {probe}, before {:?} (now {now})",
                first.next_change
            );
        }
        if let Some(next) = first.next_change
            && at(&rule, &past, next).holds != first.holds
        {
            flips_seen += 1;
        }
        // An independent count: views within the 14 days up to now.
        let views = past
            .iter()
            .filter(|e| {
                matches!(e.body, EventBody::Wechat(_)) && e.event_time >= now - 14 * DAY_MICROS
            })
            .count();
        assert_eq!(
            at(&views_in_window, &past, now).holds,
            Some(views >= 2),
            "case {case}"
        );
    }
    // The timers are not only safe but useful: many of them land on a real flip.
    assert!(flips_seen > 20, "{flips_seen} flips at the next change");
}

#[test]
fn an_explanation_gives_each_clause_its_answer_and_values() {
    use kinfold_segments::eval::explain;
    let rule = parse(r#"last_purchase_at < now - 90d and (orders >= 2 or not bought(sku = "a"))"#)
        .expect("parses");
    let events = [sale(1, START, "a", "tea", "s1", 1000)];
    let now = START + 100 * DAY_MICROS;
    let (explanation, holds) = with_subject(&events, now, |subject| {
        (explain(&rule, subject), evaluate(&rule, subject).holds)
    });
    assert_eq!(explanation.holds, holds);
    assert_eq!(
        explanation.lines(),
        [
            r#"no: last_purchase_at < now - 90d and (orders >= 2 or not bought(sku = "a"))"#,
            "  yes: last_purchase_at < now - 90d (last_purchase_at = 2026-01-01T00:00:00+00:00, now - 90d = 2026-01-11T00:00:00+00:00)",
            r#"  no: orders >= 2 or not bought(sku = "a")"#,
            "    no: orders >= 2 (orders = 1, 2 = 2)",
            r#"    no: not bought(sku = "a")"#,
            r#"      yes: bought(sku = "a") (bought(sku = "a") = true)"#,
        ]
    );
}

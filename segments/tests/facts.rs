//! The facts table against one-by-one evaluation: for random customers and random rules, the
//! members the columns decide together with those of the undecided customers that evaluate
//! as members are exactly the customers that evaluating the rule for each gives, with the
//! consent purpose enforced; and a rule of column conditions only leaves nobody undecided.

mod common;

use common::{ATOMS, START, birthday, member, till, view, with_subject};
use kinfold_core::CanonicalEvent;
use kinfold_profile::fold::DAY_MICROS;
use kinfold_profile::{Journal, Profile, ProfileRules, fold};
use kinfold_segments::eval::{Facts, Population, Subject, consented, evaluate};
use kinfold_segments::rule::{Rule, parse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const PURPOSE: &str = "marketing_sms";

/// Conditions the columns decide.
const COLUMN_ATOMS: &[&str] = &[
    "orders >= 2",
    "net_spend > 40",
    "gross_spend <= 60.5",
    "returns = 0",
    "views != 1",
    "average_order_value < 30",
    "mean_purchase_interval_days >= 3",
    "coupon_use_rate = 0",
    "rfm.m >= 2",
    "events > 3",
    "last_purchase_at < now - 10d",
    "now - 20d <= first_purchase_at",
    "last_event_at >= now - 1w",
    "recency_days >= 5",
    "3 > recency_days",
    "2 < orders",
    "1 >= returns",
    r#"trait.gender = "f""#,
    r#"trait.home_store in ["s1", "s3"]"#,
    r#"trait.gender != "m""#,
    r#"primary_currency = "CNY""#,
    "consent.marketing_sms",
    "consent.marketing_email = false",
    "follows.wx1",
    "tag.vip",
    "orders in [1, 3]",
    "1 < 2",
    "percentile(net_spend) >= 80",
    "percentile(orders) < 50",
    "percentile(views) = 0",
    "percentile(gross_spend) != 100",
];

fn random_rule(rng: &mut StdRng, depth: u32) -> Rule {
    if depth == 0 || rng.random_bool(0.3) {
        let atom = if rng.random_bool(0.8) {
            COLUMN_ATOMS[rng.random_range(0..COLUMN_ATOMS.len())]
        } else {
            ATOMS[rng.random_range(0..ATOMS.len())]
        };
        return parse(atom).expect("an atom parses");
    }
    match rng.random_range(0..3) {
        0 => Rule::Not(Box::new(random_rule(rng, depth - 1))),
        1 => Rule::And(vec![
            random_rule(rng, depth - 1),
            random_rule(rng, depth - 1),
        ]),
        _ => Rule::Or(vec![
            random_rule(rng, depth - 1),
            random_rule(rng, depth - 1),
        ]),
    }
}

/// Whether every condition of `rule` is one the columns decide.
fn columns_only(rule: &Rule) -> bool {
    match rule {
        Rule::And(rules) | Rule::Or(rules) => rules.iter().all(columns_only),
        Rule::Not(inner) => columns_only(inner),
        atom => COLUMN_ATOMS
            .iter()
            .any(|text| parse(text).expect("parses") == *atom),
    }
}

fn random_event(rng: &mut StdRng, id: u128, time: i64) -> CanonicalEvent {
    let pick = |rng: &mut StdRng, of: &[&'static str]| of[rng.random_range(0..of.len())];
    match rng.random_range(0..7) {
        0 => view(id, time, pick(rng, &["a", "b"])),
        1 => member(
            id,
            time,
            json!({
                "event_type": if rng.random_bool(0.6) { "CONSENT_GRANTED" } else { "CONSENT_WITHDRAWN" },
                "consent_purpose": pick(rng, &[PURPOSE, "marketing_email"]),
            }),
        ),
        2 => birthday(id, time, "1990-05-17"),
        3 => member(
            id,
            time,
            json!({
                "event_type": "PROFILE_UPDATED",
                "gender": pick(rng, &["f", "m", "x"]),
                "home_store": pick(rng, &["s1", "s2", "s3"]),
            }),
        ),
        _ => till(
            id,
            time,
            rng.random_bool(0.15),
            ("a", "tea", pick(rng, &["s1", "s2"])),
            rng.random_range(100..5_000),
        ),
    }
}

/// A customer with a profile, as of `now`, living in Shanghai.
fn subject<'a>(
    (journal, profile): &'a (Journal, Profile),
    now: i64,
    population: Option<&'a Population>,
) -> Subject<'a> {
    Subject {
        profile,
        journal,
        now,
        time_zone: chrono_tz::Asia::Shanghai,
        population,
        stores: None,
    }
}

#[test]
fn decided_by_column_equals_evaluated_one_by_one() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut exact_rules, mut members_seen, mut open_seen) = (0, 0, 0);
    for case in 0..300 {
        let customers = rng.random_range(1..30usize);
        let mut journals: Vec<Vec<CanonicalEvent>> = vec![Vec::new(); customers];
        let mut present = vec![false; customers];
        let mut facts = Facts::new();
        let mut clock = START;
        let mut next_id = 0u128;
        // Events arrive; each time, the customer's facts are written as of then.
        for _ in 0..customers * 4 {
            clock += rng.random_range(0..3 * DAY_MICROS);
            let slot = rng.random_range(0..customers);
            if rng.random_bool(0.05) {
                // Merged away: out of the table.
                facts.clear(slot as u32);
                present[slot] = false;
                journals[slot].clear();
                continue;
            }
            next_id += 1;
            journals[slot].push(random_event(&mut rng, next_id, clock));
            with_subject(&journals[slot], clock, |subject| {
                facts.set(slot as u32, subject);
            });
            present[slot] = true;
        }
        // Decided later: time-relative conditions are read at the decision's instant.
        let now = clock + rng.random_range(0..30 * DAY_MICROS);
        // Every customer with a profile as of `now`, for the oracle.
        let views: Vec<Option<(Journal, Profile)>> = (0..customers)
            .map(|slot| {
                present[slot].then(|| {
                    let journal = Journal::of(journals[slot].iter().cloned());
                    let profile =
                        fold(journal.events()).profile(&ProfileRules::default_rules(), now);
                    (journal, profile)
                })
            })
            .collect();
        for _ in 0..4 {
            let rule = random_rule(&mut rng, 3);
            let purpose = rng.random_bool(0.3).then_some(PURPOSE);
            let decided = facts.decide(&rule, purpose, now);
            // Percentiles rank among every customer with a profile, gathered one by one.
            let population = Population::gather(
                &rule,
                views.iter().flatten().map(|view| subject(view, now, None)),
            );
            assert_eq!(
                decided.customers,
                present.iter().filter(|p| **p).count() as u64
            );
            let mut got = Vec::new();
            for (slot, view) in views.iter().enumerate() {
                let (member, open) = (decided.members.contains(slot), decided.open.contains(slot));
                assert!(!(member && open), "case {case}: {rule} slot {slot} both");
                let expected = view.as_ref().is_some_and(|view| {
                    let subject = subject(view, now, Some(&population));
                    consented(purpose, subject.profile)
                        && evaluate(&rule, &subject).holds == Some(true)
                });
                if open {
                    open_seen += 1;
                }
                if member || (open && expected) {
                    got.push(slot);
                }
                if expected {
                    members_seen += 1;
                    assert!(
                        member || open,
                        "case {case}: `{rule}` ({purpose:?}) left out member {slot}"
                    );
                }
                if member {
                    assert!(expected, "case {case}: `{rule}` ({purpose:?}) took {slot}");
                }
            }
            if columns_only(&rule) {
                exact_rules += 1;
                assert_eq!(decided.open.count_ones(..), 0, "case {case}: `{rule}`");
            }
            assert!(got.iter().all(|slot| present[*slot]));
        }
    }
    // The cases exercised both paths and found members.
    assert!(exact_rules > 300, "{exact_rules}");
    assert!(members_seen > 1_000, "{members_seen}");
    assert!(open_seen > 100, "{open_seen}");
}

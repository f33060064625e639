//! Incremental re-evaluation: what one profile change costs with 100 segments defined, against
//! DuckDB recomputing the 100 segments' memberships over every customer, in the same run, over
//! the Online Retail II members (4,383 customers, as `kinfold import online-retail` maps them).
//!
//! - Kinfold: `Memberships::evaluate` of one changed customer against the 100 segments (every
//!   rule, its next timer, the bitmaps updated), done for every customer in turn: a change per
//!   customer. The profile views are folded beforehand, as the profile stage keeps them.
//! - DuckDB (`tests/python/online_retail_segments_bench.py`, one thread): the batch way, every
//!   customer's facts aggregated from the lines and every segment's members materialised; and
//!   the members alone, over facts already aggregated.
//!
//! The segments: 25 of each of `orders >= k`, `net_spend >= v`, `last_purchase_at < now - dd`
//! and `orders >= k and net_spend >= v`, as of the last invoice. Both sides must find the same
//! members in every segment. Prints the cost of one change and how many changes one batch
//! recompute costs as much as.

use kinfold_benches::online_retail::{FILE, members};
use kinfold_benches::{median, quick};
use kinfold_core::EventId;
use kinfold_profile::{Profile, ProfileRules, fold};
use kinfold_segments::eval::Subject;
use kinfold_segments::membership::{Cause, Memberships, Segment};
use kinfold_segments::rule::parse;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The 100 segments, as rule text and as the baseline's description.
fn segments() -> Vec<(String, Value)> {
    let mut segments = Vec::with_capacity(100);
    for step in 1..=25i64 {
        segments.push((format!("orders >= {step}"), json!({"orders": step})));
        let pounds = 100 * step;
        segments.push((
            format!("net_spend >= {pounds}"),
            json!({"net_pounds": pounds}),
        ));
        let days = 10 * step;
        segments.push((
            format!("last_purchase_at < now - {days}d"),
            json!({"quiet_days": days}),
        ));
        let (orders, pounds) = (1 + step % 5, 200 * (step / 5 + 1));
        segments.push((
            format!("orders >= {orders} and net_spend >= {pounds}"),
            json!({"orders": orders, "net_pounds": pounds}),
        ));
    }
    segments
}

fn main() {
    let quick = quick();
    let rounds = if quick { 3 } else { 7 };
    let started = Instant::now();
    let path = kinfold_tests::shared_data(FILE);
    let members = members(&path);
    let journals = &members.journals;
    let now = journals
        .iter()
        .filter_map(|journal| journal.last_key())
        .map(|(time, _)| time)
        .max()
        .expect("invoices");
    let rules = ProfileRules::default_rules();
    let profiles: Vec<Profile> = journals
        .iter()
        .map(|journal| fold(journal.events()).profile(&rules, now))
        .collect();
    let segments = segments();
    println!(
        "segments incremental bench{}: Online Retail II, {} customers, {} segments; setup {:.1} s",
        if quick { " (quick)" } else { "" },
        journals.len(),
        segments.len(),
        started.elapsed().as_secs_f64()
    );

    let duckdb = kinfold_tests::run_python_json(
        "online_retail_segments_bench.py",
        &[
            path.to_str().expect("a UTF-8 path"),
            &rounds.to_string(),
            &now.to_string(),
            &Value::Array(segments.iter().map(|(_, spec)| spec.clone()).collect()).to_string(),
        ],
    )
    .expect("the DuckDB baseline runs");
    assert_eq!(
        duckdb["customers"].as_u64(),
        Some(journals.len() as u64),
        "both sides have the same customers"
    );
    let expected: Vec<u64> = duckdb["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|count| count.as_u64().expect("a count"))
        .collect();

    let mut kinfold_runs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut memberships = Memberships::new();
        for (index, (rule, _)) in segments.iter().enumerate() {
            memberships.define(Segment {
                id: format!("s{index:03}"),
                version: 1,
                rule: parse(rule).expect("a segment rule parses"),
                purpose: None,
            });
        }
        let started = Instant::now();
        for (slot, (journal, profile)) in journals.iter().zip(&profiles).enumerate() {
            let subject = Subject {
                profile,
                journal,
                now,
                time_zone: chrono_tz::Europe::London,
                population: None,
                stores: None,
            };
            let cause = Cause::Event(EventId(uuid::Uuid::from_u128(slot as u128)));
            std::hint::black_box(memberships.evaluate(slot as u32, &subject, cause));
        }
        kinfold_runs.push(started.elapsed());
        let counts: Vec<u64> = (0..segments.len())
            .map(|index| {
                memberships
                    .members(&format!("s{index:03}"))
                    .map_or(0, |members| members.len())
            })
            .collect();
        assert_eq!(counts, expected, "both sides find the same members");
    }
    let seconds = |name: &str| -> Vec<Duration> {
        duckdb["seconds"][name]
            .as_array()
            .expect("timings")
            .iter()
            .map(|value| Duration::from_secs_f64(value.as_f64().expect("seconds")))
            .collect()
    };
    let kinfold = median(&mut kinfold_runs);
    let recompute = median(&mut seconds("recompute"));
    let predicates = median(&mut seconds("predicates"));
    let per_change = kinfold.as_secs_f64() / journals.len() as f64;
    println!(
        "  kinfold: one profile change against {} segments: {:.1} us ({} changes in {:.1} ms)",
        segments.len(),
        per_change * 1e6,
        journals.len(),
        kinfold.as_secs_f64() * 1e3
    );
    println!(
        "  duckdb recompute of every segment (facts + members): {:.1} ms = the cost of {:.0} changes",
        recompute.as_secs_f64() * 1e3,
        recompute.as_secs_f64() / per_change
    );
    println!(
        "  duckdb members only, facts already aggregated:       {:.1} ms = the cost of {:.0} changes",
        predicates.as_secs_f64() * 1e3,
        predicates.as_secs_f64() / per_change
    );
    println!(
        "  kinfold every customer changed once / duckdb recompute: {:.2} of its time",
        kinfold.as_secs_f64() / recompute.as_secs_f64()
    );
}

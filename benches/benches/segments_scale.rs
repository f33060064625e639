//! Segments at scale: `CountMembers` of a stored segment and `PreviewSegment` of a rule not
//! saved, over 1M and 10M synthetic profiles, against DuckDB running the same predicate over
//! the same profiles exported to Parquet, in the same run.
//!
//! - Kinfold: the calls behind the two RPCs, without the gRPC hop (measured on its own by the
//!   `profile_grpc` bench). A stored segment's count is its maintained bitmap's size; the
//!   segments are built as the stage builds them, `Memberships::evaluate` for every customer.
//!   A preview is `Facts::decide` over the facts table the stage keeps (one row per customer,
//!   written by `Facts::set` as the stage writes it), the members counted and a sample of 10
//!   ids taken.
//! - DuckDB (`tests/python/segments_scale_bench.py`, its default threads): the profiles as a
//!   CSV copied to Parquet once, untimed; then `count(*)` with the predicate (what a count
//!   costs without a maintained segment), and that plus a `LIMIT 10` of ids (a preview).
//!
//! Both sides must find the same number of members for every rule. `KINFOLD_BENCH_QUICK=1`
//! runs 100,000 profiles only; `KINFOLD_SCALE_SIZES=1000000,...` picks the sizes.

use kinfold_benches::{median, quick};
use kinfold_profile::fold::{Consent, DAY_MICROS, Dated, ProfileState, Spend};
use kinfold_profile::{Journal, Profile, ProfileRules};
use kinfold_segments::eval::{Facts, Subject};
use kinfold_segments::membership::{Cause, Memberships, Segment};
use kinfold_segments::rule::parse;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, Instant};

/// 2026-12-01T00:00:00Z: the instant every rule is evaluated at.
const NOW: i64 = 1_796_083_200_000_000;
const SAMPLE: usize = 10;
const PURPOSE: &str = "marketing_sms";

/// A rule: its name, Kinfold's text and purpose, and DuckDB's predicate.
struct Query {
    name: &'static str,
    rule: String,
    purpose: Option<&'static str>,
    sql: String,
    /// Kept as a stored segment too (a percentile is not: the stage ranks stored segments
    /// among a population it gathers from the store on its schedule, which this bench has not).
    stored: bool,
}

fn queries() -> Vec<Query> {
    let stores: Vec<String> = (1..=10).map(|n| format!("S{n:03}")).collect();
    let quoted = |q: char| {
        stores
            .iter()
            .map(|s| format!("{q}{s}{q}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        Query {
            name: "high_value",
            rule: "orders >= 5 and net_spend >= 1000".into(),
            purpose: None,
            sql: "orders >= 5 AND net_spend >= 1000".into(),
            stored: true,
        },
        Query {
            name: "dormant_sms",
            rule: "last_purchase_at < now - 90d".into(),
            purpose: Some(PURPOSE),
            sql: format!(
                "last_purchase_at < {} AND consent_marketing_sms",
                NOW - 90 * DAY_MICROS
            ),
            stored: true,
        },
        Query {
            name: "women_near_stores",
            rule: format!(
                r#"trait.gender = "f" and trait.home_store in [{}] and average_order_value > 200"#,
                quoted('"')
            ),
            purpose: None,
            sql: format!(
                "gender = 'f' AND home_store IN ({}) AND average_order_value > 200",
                quoted('\'')
            ),
            stored: true,
        },
        Query {
            name: "top_5_percent_spend",
            rule: "percentile(net_spend) >= 95".into(),
            purpose: None,
            // SQL's percent_rank is the share of the others below, as `percentile` ranks.
            sql: "customer IN (SELECT customer FROM (SELECT customer, 100 * percent_rank() \
                  OVER (ORDER BY net_spend) AS p FROM {source} WHERE net_spend IS NOT NULL) \
                  WHERE p >= 95)"
                .into(),
            stored: false,
        },
        Query {
            name: "lapsing_or_new_no_sms",
            rule: "(recency_days >= 30 or orders < 2) and not consent.marketing_sms".into(),
            purpose: None,
            sql: format!(
                "(last_purchase_at <= {} OR orders < 2) AND NOT consent_marketing_sms",
                NOW - 30 * DAY_MICROS
            ),
            stored: true,
        },
    ]
}

fn customer_id(slot: usize) -> String {
    format!("c{slot:09}")
}

/// Writes customer `slot`'s random facts into `profile` (a reused template), and returns the
/// CSV row DuckDB reads.
fn synthesise(rng: &mut StdRng, slot: usize, profile: &mut Profile) -> String {
    let u: f64 = rng.random();
    let orders = if rng.random_bool(0.2) {
        0
    } else {
        1 + (u * u * u * 40.0) as u64
    };
    let views = rng.random_range(0..20u64);
    let returns = if orders > 0 && rng.random_bool(0.2) {
        rng.random_range(1..=orders.min(3))
    } else {
        0
    };
    profile.events = orders + returns + views;
    profile.views = views;
    profile.overall.orders = orders;
    profile.overall.returns = returns;
    profile.overall.money.clear();
    let (mut net, mut gross, mut aov, mut first, mut last) = (None, None, None, None, None);
    if orders > 0 {
        let gross_minor = (orders as i64) * rng.random_range(2_000..60_000i64);
        let returned_minor = if returns > 0 {
            gross_minor / rng.random_range(5..20i64)
        } else {
            0
        };
        let spend = Spend {
            orders,
            gross_minor,
            returned_minor,
        };
        net = Some(spend.net_minor() as f64 / 100.0);
        gross = Some(gross_minor as f64 / 100.0);
        let aov_minor = gross_minor / orders as i64;
        aov = Some(aov_minor as f64 / 100.0);
        profile.overall.money.insert("CNY".to_owned(), spend);
        profile.primary_currency = Some("CNY".to_owned());
        profile.average_order_value_minor = Some(aov_minor);
        let first_at = NOW - rng.random_range(0..730 * DAY_MICROS);
        let last_at = first_at + rng.random_range(0..=NOW - first_at);
        profile.overall.first_purchase = Some(first_at);
        profile.overall.last_purchase = Some(last_at);
        (first, last) = (Some(first_at), Some(last_at));
    } else {
        profile.primary_currency = None;
        profile.average_order_value_minor = None;
        profile.overall.first_purchase = None;
        profile.overall.last_purchase = None;
    }
    let gender = match rng.random_range(0..20) {
        0 => None,
        1..=11 => Some("f"),
        _ => Some("m"),
    };
    let home_store = (!rng.random_bool(0.1)).then(|| format!("S{:03}", rng.random_range(1..=200)));
    for (name, value) in [
        ("gender", gender.map(str::to_owned)),
        ("home_store", home_store.clone()),
    ] {
        match value {
            Some(value) => {
                profile
                    .traits
                    .insert(name.to_owned(), Dated { value, at: 0 });
            }
            None => {
                profile.traits.remove(name);
            }
        }
    }
    let consent = match rng.random_range(0..10) {
        0..=5 => Some(true),
        6 => Some(false),
        _ => None,
    };
    match consent {
        Some(granted) => {
            profile.consent.insert(
                PURPOSE.to_owned(),
                Consent {
                    granted,
                    channel: None,
                    at: 0,
                },
            );
        }
        None => {
            profile.consent.remove(PURPOSE);
        }
    }
    let cell = |value: Option<String>| value.unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        customer_id(slot),
        profile.events,
        orders,
        returns,
        views,
        cell(net.map(|v| v.to_string())),
        cell(gross.map(|v| v.to_string())),
        cell(aov.map(|v| v.to_string())),
        cell(first.map(|v| v.to_string())),
        cell(last.map(|v| v.to_string())),
        cell(gender.map(str::to_owned)),
        cell(home_store),
        consent == Some(true),
    )
}

/// The CSV's columns and their SQL types.
const COLUMNS: &[(&str, &str)] = &[
    ("customer", "VARCHAR"),
    ("events", "BIGINT"),
    ("orders", "BIGINT"),
    ("returns", "BIGINT"),
    ("views", "BIGINT"),
    ("net_spend", "DOUBLE"),
    ("gross_spend", "DOUBLE"),
    ("average_order_value", "DOUBLE"),
    ("first_purchase_at", "BIGINT"),
    ("last_purchase_at", "BIGINT"),
    ("gender", "VARCHAR"),
    ("home_store", "VARCHAR"),
    ("consent_marketing_sms", "BOOLEAN"),
];

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn seconds(value: &Value) -> Vec<Duration> {
    value
        .as_array()
        .expect("timings")
        .iter()
        .map(|v| Duration::from_secs_f64(v.as_f64().expect("seconds")))
        .collect()
}

fn run(size: usize, rounds: usize, dir: &std::path::Path) {
    let started = Instant::now();
    let queries = queries();
    let rules = ProfileRules::default_rules();
    let mut profile = ProfileState::default().profile(&rules, NOW);
    let journal = Journal::new();
    let mut memberships = Memberships::new();
    for query in queries.iter().filter(|query| query.stored) {
        memberships.define(Segment {
            id: query.name.to_owned(),
            version: 1,
            rule: parse(&query.rule).expect("a rule parses"),
            purpose: query.purpose.map(str::to_owned),
        });
    }
    let mut facts = Facts::new();
    let csv_path = dir.join(format!("profiles-{size}.csv"));
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_path).expect("a CSV"));
    let header: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    writeln!(csv, "{}", header.join(",")).expect("writes");
    let mut rng = StdRng::seed_from_u64(size as u64);
    for slot in 0..size {
        let row = synthesise(&mut rng, slot, &mut profile);
        csv.write_all(row.as_bytes()).expect("writes");
        let subject = Subject {
            profile: &profile,
            journal: &journal,
            now: NOW,
            time_zone: chrono_tz::Asia::Shanghai,
            population: None,
            stores: None,
        };
        let slot = u32::try_from(slot).expect("fits");
        facts.set(slot, &subject);
        memberships.evaluate(slot, &subject, Cause::Refresh);
    }
    csv.flush().expect("writes");
    drop(csv);
    let built = started.elapsed();

    let parquet = dir.join(format!("profiles-{size}.parquet"));
    let spec = Value::Array(
        queries
            .iter()
            .map(|q| json!({"name": q.name, "where": q.sql}))
            .collect(),
    );
    let duckdb = kinfold_tests::run_python_json(
        "segments_scale_bench.py",
        &[
            csv_path.to_str().expect("UTF-8"),
            parquet.to_str().expect("UTF-8"),
            &rounds.to_string(),
            &SAMPLE.to_string(),
            &spec.to_string(),
            &json!(COLUMNS).to_string(),
        ],
    )
    .expect("the DuckDB baseline runs");
    assert_eq!(
        duckdb["rows"].as_u64(),
        Some(size as u64),
        "the same profiles"
    );
    let _ = std::fs::remove_file(&csv_path);
    let parquet_mb = std::fs::metadata(&parquet).map_or(0, |m| m.len()) / 1_000_000;
    let _ = std::fs::remove_file(&parquet);
    println!(
        "\n{size} profiles: built the facts table and {} segments in {:.1} s; Parquet {parquet_mb} MB; DuckDB threads {}",
        queries.iter().filter(|query| query.stored).count(),
        built.as_secs_f64(),
        duckdb["threads"]
    );
    println!(
        "{:<22} {:>9} | {:>12} {:>12} {:>9} | {:>12} {:>12} {:>7}",
        "rule",
        "members",
        "count Kf",
        "count DuckDB",
        "Kf/Duck",
        "preview Kf",
        "prev DuckDB",
        "speed"
    );
    for query in &queries {
        let rule = parse(&query.rule).expect("parses");
        let expected = duckdb["queries"][query.name]["count"]
            .as_u64()
            .expect("a count");
        // CountMembers: the stored segment's bitmap, as `SegmentStage::count` reads it.
        let mut count_runs = Vec::with_capacity(1_000);
        if query.stored {
            let mut stored = 0;
            for _ in 0..1_000 {
                let started = Instant::now();
                stored = std::hint::black_box(&memberships)
                    .members(query.name)
                    .map_or(0, |members| members.len());
                count_runs.push(started.elapsed());
            }
            assert_eq!(
                stored, expected,
                "{}: the stored segment is DuckDB's",
                query.name
            );
        }
        // PreviewSegment: decided over the facts table, counted, 10 ids taken.
        let mut preview_runs = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            let decided = facts.decide(&rule, query.purpose, NOW);
            let members = decided.members.count_ones(..) as u64;
            let mut sample: Vec<String> = decided
                .members
                .ones()
                .take(SAMPLE)
                .map(customer_id)
                .collect();
            sample.sort_unstable();
            preview_runs.push(started.elapsed());
            assert_eq!(
                decided.open.count_ones(..),
                0,
                "{}: decided by column",
                query.name
            );
            assert_eq!(members, expected, "{}: the preview is DuckDB's", query.name);
            assert_eq!(sample.len(), SAMPLE.min(members as usize));
        }
        let duck_count = median(&mut seconds(&duckdb["queries"][query.name]["count_s"]));
        let duck_preview = median(&mut seconds(&duckdb["queries"][query.name]["preview_s"]));
        let preview = median(&mut preview_runs);
        let counted = if count_runs.is_empty() {
            format!("{:>12} {:>12} {:>9}", "-", "-", "-")
        } else {
            let count = median(&mut count_runs);
            format!(
                "{:>9.2} µs {:>9.2} ms {:>8.0}x",
                count.as_secs_f64() * 1e6,
                millis(duck_count),
                duck_count.as_secs_f64() / count.as_secs_f64().max(1e-9),
            )
        };
        println!(
            "{:<22} {:>9} | {counted} | {:>9.2} ms {:>9.2} ms {:>6.2}x",
            query.name,
            expected,
            millis(preview),
            millis(duck_preview),
            duck_preview.as_secs_f64() / preview.as_secs_f64(),
        );
    }
}

fn main() {
    let quick = quick();
    let sizes: Vec<usize> = match std::env::var("KINFOLD_SCALE_SIZES") {
        Ok(sizes) => sizes
            .split(',')
            .map(|size| size.trim().parse().expect("a size"))
            .collect(),
        Err(_) if quick => vec![100_000],
        Err(_) => vec![1_000_000, 10_000_000],
    };
    let rounds = if quick { 3 } else { 7 };
    println!(
        "segments scale bench{}: CountMembers and PreviewSegment vs DuckDB over Parquet; speed = DuckDB's time / Kinfold's (goal: count >= 1 and <= 50 ms at 10M; preview >= 0.5)",
        if quick { " (quick)" } else { "" }
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    for size in sizes {
        run(size, rounds, dir.path());
    }
}

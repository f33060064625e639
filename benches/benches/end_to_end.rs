//! End to end on the embedded default: the synthetic generator's events posted to a running
//! `kinfold serve` (`POST /v1/events`, batches of 1,000), through every stage (ingest,
//! identity, profile, segments with 20 segments defined), each durable; the figure is events
//! per second from the first post until every stage reports no lag.
//!
//! The server is the release binary next to this benchmark's (`target/release/kinfold`, which
//! `.ci/run` builds first), or `KINFOLD_BIN`. The lag gauges are measured every 2 s, so the
//! time to catch up is known to about 2 s: runs are long enough for that to matter little
//! (200,000 events; `KINFOLD_BENCH_QUICK=1`: 20,000, a smoke run).
//!
//! No baseline runs beside it: the goal is absolute (200,000 events/s on this 2-core
//! machine). The run also prints how fast ingest alone took the events in (the posts'
//! answers), which bounds what the stages behind it can show.

use kinfold_benches::generator::{Generator, GeneratorConfig};
use kinfold_benches::quick;
use kinfold_tests::{Server, grpc_calls, wait_stages_caught_up};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The 20 segments: facts, windows over the journal, consent, calendars.
const SEGMENTS: [&str; 20] = [
    "orders >= 1",
    "orders >= 3",
    "orders >= 10",
    "net_spend >= 100",
    "net_spend >= 1000",
    "returns >= 1",
    "last_purchase_at < now - 7d",
    "last_purchase_at < now - 30d",
    "last_purchase_at >= now - 3d",
    "first_purchase_at >= now - 14d",
    r#"count(type = "view", within = 14d) >= 3"#,
    r#"count(type = "purchase", within = 30d) >= 2"#,
    r#"spend(within = 30d) >= 200"#,
    r#"bought(within = 30d) and not (orders >= 5)"#,
    "consent.marketing_sms",
    "birthday_within(7d)",
    "recency_days >= 10",
    "views >= 5 and orders = 0",
    "coupons_redeemed >= 1",
    r#"has("phone") and orders >= 2"#,
];

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("KINFOLD_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("this benchmark's path");
    // target/release/deps/end_to_end-HASH -> target/release/kinfold
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/release")
        .join("kinfold");
    assert!(
        path.exists(),
        "{} is missing: `cargo build --release -p kinfold` first (or set KINFOLD_BIN)",
        path.display()
    );
    path
}

fn main() {
    let quick = quick();
    let events: usize = if quick { 20_000 } else { 200_000 };
    // The generator's first window holds about customers * 0.55 * days events; past it the
    // calendar carries on into the future, which ingest rightly rejects. A population that
    // fills the month with more than enough.
    let customers = u32::try_from(events / 13).expect("a population");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&binary(), &dir.path().join("data")).expect("kinfold serve starts");
    for (index, rule) in SEGMENTS.iter().enumerate() {
        let created = grpc_calls(
            &server,
            &json!([{"call": "kinfold.v1.SegmentService/CreateSegment",
                     "request": {"id": format!("s{index:02}"), "rule": rule}}]),
        );
        assert_eq!(created[0]["code"], "OK", "{rule}: {created:?}");
    }
    // A month of shopping, ending a day ago.
    let now = kinfold_core::time::Clock::now_micros(&kinfold_core::time::SystemClock);
    let mut generator = Generator::new(GeneratorConfig {
        customers,
        start_micros: now - 31 * 86_400_000_000,
        days: 30,
        ..GeneratorConfig::default()
    });
    let batches: Vec<Value> = (0..events.div_ceil(1_000))
        .map(|_| {
            Value::Array(
                (0..1_000)
                    .map(|_| {
                        serde_json::to_value(kinfold_ingest::model::JsonEvent::from(
                            generator.next_event(),
                        ))
                        .expect("an event")
                    })
                    .collect(),
            )
        })
        .collect();
    let posted: usize = batches
        .iter()
        .map(|batch| batch.as_array().map_or(0, Vec::len))
        .sum();
    println!(
        "end to end bench{}: {posted} events of {customers} people, {} segments, embedded log and store",
        if quick { " (quick)" } else { "" },
        SEGMENTS.len()
    );

    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    let mut statuses: std::collections::BTreeMap<String, usize> = Default::default();
    for batch in &batches {
        let answer: Value = client
            .post(format!("{}/v1/events", server.url))
            .json(batch)
            .send()
            .expect("posted")
            .json()
            .expect("json");
        for result in answer["results"].as_array().expect("results") {
            *statuses
                .entry(result["status"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
    }
    // The generator repeats some events (delivery is at least once): duplicates are answered
    // as such and go no further.
    let accepted = statuses.get("accepted").copied().unwrap_or(0);
    let ingested = started.elapsed();
    wait_stages_caught_up(
        &server,
        &[
            "ingest",
            "identity-forward",
            "identity",
            "profile",
            "segments",
        ],
        Duration::from_secs(3_600),
    );
    let through = started.elapsed();
    let rejected = statuses.get("rejected").copied().unwrap_or(0);
    assert!(rejected * 100 <= posted, "{statuses:?}");
    let counts: Vec<u64> = (0..SEGMENTS.len())
        .map(|index| {
            let answer = grpc_calls(
                &server,
                &json!([{"call": "kinfold.v1.SegmentService/CountMembers",
                         "request": {"segment_id": format!("s{index:02}")}}]),
            );
            answer[0]["response"]["members"]
                .as_str()
                .map_or(0, |count| count.parse().expect("a count"))
        })
        .collect();
    assert!(counts[0] > 0, "buyers: {counts:?}");
    server.stop().expect("stops");
    let rate = |elapsed: Duration| accepted as f64 / elapsed.as_secs_f64();
    println!(
        "  ingest took them in: {:>9.0} events/s ({:.1} s; {statuses:?})",
        rate(ingested),
        ingested.as_secs_f64()
    );
    println!(
        "  through every stage:  {:>9.0} events/s ({:.1} s to no lag anywhere, +-2 s)",
        rate(through),
        through.as_secs_f64()
    );
    println!("  members of the 20 segments: {counts:?}");
    println!("  goal: >= 200000 events/s through every stage");
}

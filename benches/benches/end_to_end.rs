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
//!
//! Then the latency at half that load: new people's events posted in batches of 100 at half
//! the rate measured, each event's posting instant kept by its event id; once every stage has
//! caught up and the server has stopped, `segments.changes` is read from the data directory,
//! and each change caused by one of those events gives that event's time from its post to the
//! membership change (the instant the stage evaluated it; one clock, one machine). Events that
//! change no membership are not seen there.

use kinfold_benches::generator::{Generator, GeneratorConfig};
use kinfold_benches::quick;
use kinfold_tests::{Server, grpc_calls, wait_stages_caught_up};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Every stage the events go through.
const STAGES: &[&str] = &[
    "ingest",
    "identity-forward",
    "identity",
    "profile",
    "segments",
];

/// Posts `batch` to `server`; each event's status (`accepted`, `duplicate`, `rejected`) is
/// counted in `statuses`; returns the answer.
fn post(
    client: &reqwest::blocking::Client,
    server: &Server,
    batch: &Value,
    statuses: &mut std::collections::BTreeMap<String, usize>,
) -> Value {
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
    answer
}

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

/// For each change in `segments.changes` (read from the stopped server's data directory)
/// caused by one of `posted_at`'s events: the micros from its post to the change.
fn latencies(
    data: &std::path::Path,
    posted_at: &std::collections::HashMap<String, i64>,
) -> Vec<i64> {
    use kinfold_core::ports::EventLog as _;
    let database = kinfold_storage::EmbeddedDatabase::open(data).expect("the data directory");
    let log = database.log();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut latencies = Vec::new();
        let partitions = log.partitions("segments.changes").await.expect("the topic");
        for partition in 0..partitions {
            let mut from = 0;
            loop {
                let records = log
                    .read("segments.changes", partition, from, 10_000)
                    .await
                    .expect("reads");
                let Some(last) = records.last() else {
                    break;
                };
                from = last.offset + 1;
                for record in records {
                    let change: Value = serde_json::from_slice(&record.value).expect("json");
                    if let (Some(event), Some(at)) =
                        (change["event_id"].as_str(), change["at"].as_i64())
                        && let Some(posted) = posted_at.get(event)
                    {
                        latencies.push(at - posted);
                    }
                }
            }
        }
        latencies
    })
}

fn main() {
    let quick = quick();
    let events: usize = if quick { 20_000 } else { 200_000 };
    // The generator's first window holds about customers * 0.55 * days events; past it the
    // calendar carries on into the future, which ingest rightly rejects. A population that
    // fills the month with more than enough.
    let customers = u32::try_from(events / 13).expect("a population");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = Server::start(&binary(), &data).expect("kinfold serve starts");
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
        post(&client, &server, batch, &mut statuses);
    }
    // The generator repeats some events (delivery is at least once): duplicates are answered
    // as such and go no further.
    let accepted = statuses.get("accepted").copied().unwrap_or(0);
    let ingested = started.elapsed();
    wait_stages_caught_up(&server, STAGES, Duration::from_secs(3_600));
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
    let rate = |elapsed: Duration| accepted as f64 / elapsed.as_secs_f64();

    // At half the load: new people, batches of 100 on a schedule.
    let half = (rate(through) / 2.0).max(100.0);
    let mut newcomers = Generator::new(GeneratorConfig {
        customers: customers / 4,
        seed: 8,
        start_micros: now - 31 * 86_400_000_000,
        days: 30,
        // Another brand: other cards, stores and orders, so no event repeats one posted before.
        brand: "kinfold-bench".to_owned(),
    });
    let paced = events / 10;
    let pause = Duration::from_secs_f64(100.0 / half);
    let mut posted_at: std::collections::HashMap<String, i64> = Default::default();
    let mut paced_statuses: std::collections::BTreeMap<String, usize> = Default::default();
    let paced_from = Instant::now();
    for batch in 0..paced.div_ceil(100) {
        let due = paced_from + pause * u32::try_from(batch).expect("batches");
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let body: Vec<Value> = (0..100)
            .map(|_| {
                serde_json::to_value(kinfold_ingest::model::JsonEvent::from(
                    newcomers.next_event(),
                ))
                .expect("an event")
            })
            .collect();
        let at = kinfold_core::time::Clock::now_micros(&kinfold_core::time::SystemClock);
        let answer = post(&client, &server, &Value::Array(body), &mut paced_statuses);
        for result in answer["results"].as_array().expect("results") {
            if result["status"] == "accepted" {
                posted_at.insert(result["event_id"].as_str().expect("an id").to_owned(), at);
            }
        }
    }
    let paced_for = paced_from.elapsed();
    wait_stages_caught_up(&server, STAGES, Duration::from_secs(3_600));
    server.stop().expect("stops");
    let mut latencies = latencies(&data, &posted_at);
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |micros| *micros as f64 / 1e3)
    };
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
    println!(
        "  at half that load ({:.0} events/s offered, {paced_statuses:?} in {:.1} s): event to membership change p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} changes seen)",
        half,
        paced_for.as_secs_f64(),
        percentile(0.5),
        percentile(0.99),
        percentile(1.0),
        latencies.len()
    );
    println!("  goal: >= 200000 events/s through every stage");
}

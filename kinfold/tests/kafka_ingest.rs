//! The ingest stage on Kafka, end to end, against a real Kafka-protocol broker (tansu) with
//! records written by Confluent's own Python producer and AvroSerializer through Kinfold's
//! `/registry`, and read back by Confluent's Python consumer and AvroDeserializer:
//!
//! - SIGKILLed five times while 100,000 records (1% poison) flow, every source record still ends
//!   in `events.canonical` or `events.dlq`, once, every canonical event in `events.resolved`
//!   with one customer, and the consumer lag returns to zero;
//! - two processes in one group, made to rebalance at least ten times, lose nothing, and the
//!   commit audit of their logs shows no commit for a partition its committer did not own;
//!   they share a schema registry by URL (a third Kinfold that runs no stage).
//!
//! Needs `--features kafka`.
#![cfg(feature = "kafka")]

use kinfold_core::ports::EventLog;
use kinfold_storage::kafka::KafkaLog;
use kinfold_tests::{
    Broker, Server, grpc_calls, python, python_script, run_python_json, total_records,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");
const GROUP: &str = "kinfold-ingest";
const SOURCES: &[&str] = &[
    "pos.transactions",
    "ecom.orders",
    "ecom.refunds",
    "wechat.events",
    "membership.events",
];

fn log_url(broker: &Broker) -> String {
    format!(
        "kafka://{}?session.timeout.ms=6000&heartbeat.interval.ms=1000",
        broker.bootstrap
    )
}

fn command(broker: &Broker) -> Command {
    let mut command = Command::new(BINARY);
    command.env("KINFOLD__STORAGE__LOG", log_url(broker));
    command
}

/// A directory for the logs of one test's processes that outlives a failed run, so the logs
/// can be read afterwards (`target/tmp/kafka_ingest/<test>`); emptied when the test starts.
fn kept_logs(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("kafka_ingest")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("logs dir");
    eprintln!("process logs in {}", dir.display());
    dir
}

/// `kinfold serve` on `data_dir`, its log (JSON, warnings and the audit) in `log`.
fn serve_logging(broker: &Broker, data_dir: &Path, log: &Path, extra: &[(&str, &str)]) -> Server {
    let file = std::fs::File::create(log).expect("log file");
    let mut command = command(broker);
    command
        .env("RUST_LOG", "warn,kinfold::audit=info")
        .env("KINFOLD__LOG__JSON", "true")
        .envs(extra.iter().copied());
    Server::start_logging(command, data_dir, file).expect("kinfold starts on kafka")
}

/// The Python producer, running in the background.
struct Producer {
    child: Child,
    out: PathBuf,
}

/// What the producer wrote: each record's position (`topic/partition@offset`) and what it is,
/// how many shoppers its valid records belong to, and each shopper's order facts as the
/// producer's own records add them up.
struct Produced {
    records: BTreeMap<String, String>,
    shoppers: usize,
    facts: BTreeMap<u64, Facts>,
}

/// A shopper's events and order facts: (events, orders, returns, gross, returned).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Facts {
    events: u64,
    orders: u64,
    returns: u64,
    gross_minor: i64,
    returned_minor: i64,
}

impl Producer {
    /// Serialises `count` records (`poison_per_mille` of them poison) and produces them at
    /// `rate` records a second (0: as fast as it can) from a background process.
    fn start(
        broker: &Broker,
        registry: &str,
        count: u32,
        poison_per_mille: u32,
        rate: u32,
        dir: &Path,
    ) -> Self {
        let out = dir.join("produced.json");
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/golden");
        let child = Command::new(python())
            .arg(python_script("kafka_produce_avro.py"))
            .arg(&broker.bootstrap)
            .arg(registry)
            .arg(golden)
            .arg(count.to_string())
            .arg(poison_per_mille.to_string())
            .arg(&out)
            .arg(rate.to_string())
            .spawn()
            .expect("the python producer starts");
        let producer = Self { child, out };
        // Every record serialised: the registry is no longer needed, kills may begin.
        let ready = producer.out.with_extension("json.ready");
        let deadline = Instant::now() + Duration::from_secs(300);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "the producer did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        producer
    }

    fn finish(mut self) -> Produced {
        let status = self.child.wait().expect("producer exits");
        assert!(status.success(), "the python producer failed: {status}");
        let report: Value =
            serde_json::from_slice(&std::fs::read(&self.out).expect("report")).expect("json");
        assert_eq!(
            report["failed"],
            Value::Array(Vec::new()),
            "deliveries failed"
        );
        let records = report["delivered"]
            .as_array()
            .expect("delivered")
            .iter()
            .map(|record| {
                (
                    format!(
                        "{}/{}@{}",
                        record["topic"].as_str().expect("topic"),
                        record["partition"],
                        record["offset"]
                    ),
                    record["what"].as_str().expect("what").to_owned(),
                )
            })
            .collect();
        let mut facts: BTreeMap<u64, Facts> = BTreeMap::new();
        for record in report["delivered"].as_array().expect("delivered") {
            let Some(person) = record["person"].as_u64() else {
                continue;
            };
            let shopper = facts.entry(person).or_default();
            shopper.events += 1;
            let amount = record["amount_minor"].as_i64().expect("an amount");
            match record["money"].as_str() {
                Some("SALE" | "ORDER") => {
                    shopper.orders += 1;
                    shopper.gross_minor += amount;
                }
                Some("RETURN") => {
                    shopper.returns += 1;
                    shopper.returned_minor += amount;
                }
                _ => {}
            }
        }
        Produced {
            records,
            shoppers: facts.len(),
            facts,
        }
    }
}

/// Waits until the ingest group has committed the end of every source partition.
fn wait_caught_up(broker: &Broker, timeout: Duration) {
    wait_group_caught_up(broker, GROUP, SOURCES, timeout);
}

/// Waits until `group` has committed the end of every partition of `topics`.
fn wait_group_caught_up(broker: &Broker, group: &str, topics: &[&str], timeout: Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let log = KafkaLog::connect(&broker.bootstrap).expect("connects");
        let deadline = Instant::now() + timeout;
        loop {
            let behind = kinfold_tests::group_behind(&log, group, topics).await;
            if behind.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "not caught up: {behind:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// Every record of `topic`, decoded by Confluent's consumer through `registry`.
fn consume(broker: &Broker, registry: &str, topic: &str) -> Vec<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let total: u64 = runtime.block_on(async {
        let log = KafkaLog::connect(&broker.bootstrap).expect("connects");
        total_records(&log, topic).await
    });
    let answer = run_python_json(
        "kafka_consume.py",
        &[
            &broker.bootstrap,
            registry,
            topic,
            &total.to_string(),
            "600",
        ],
    )
    .expect("the python consumer reads");
    let records = answer["records"].as_array().expect("records").clone();
    assert_eq!(records.len() as u64, total, "every record of {topic} read");
    records
}

/// Checks that every produced record is in the canonical log (valid ones, by origin) or in the
/// dead-letter log (poison, by source position, with the expected reason), each exactly once.
fn assert_every_record_landed_once(
    broker: &Broker,
    registry: &str,
    produced: &Produced,
) -> BTreeSet<String> {
    let canonical = consume(broker, registry, "events.canonical");
    let mut origins: BTreeMap<String, u32> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for event in &canonical {
        let origin = event["origin"].as_str().expect("origin");
        let position = origin.strip_prefix("kafka:").expect("a kafka origin");
        *origins.entry(position.to_owned()).or_default() += 1;
        ids.insert(event["id"].as_str().expect("id").to_owned());
    }
    let letters = consume(broker, registry, "events.dlq");
    let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for letter in &letters {
        let source = &letter["source"];
        sources
            .entry(format!(
                "{}/{}@{}",
                source[0].as_str().expect("source topic"),
                source[1],
                source[2]
            ))
            .or_default()
            .push(letter["type"].as_str().expect("reason code").to_owned());
    }
    let expected_code = |what: &str| match what {
        "truncated" => "undecodable",
        "unknown_schema_id" => "unknown_schema_id",
        "bad_magic" => "bad_framing",
        "foreign_schema" => "unsupported_record",
        "over_long" => "field_too_long",
        other => panic!("unknown poison kind {other}"),
    };
    let mut lost = Vec::new();
    for (position, what) in &produced.records {
        if what == "valid" {
            match origins.get(position) {
                Some(1) => {}
                other => lost.push(format!("{position} ({what}): {other:?} canonical events")),
            }
        } else {
            match sources.get(position).map(Vec::as_slice) {
                Some([code]) if code == expected_code(what) => {}
                other => lost.push(format!("{position} ({what}): dead letters {other:?}")),
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} records astray: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let valid = produced
        .records
        .values()
        .filter(|what| *what == "valid")
        .count();
    assert_eq!(
        canonical.len(),
        valid,
        "no event twice in the canonical log"
    );
    assert_eq!(ids.len(), valid, "one event id per valid record");
    assert_eq!(
        letters.len(),
        produced.records.len() - valid,
        "no dead letter twice"
    );
    ids
}

/// Checks the identity stage's output: every canonical event is in `events.resolved`, and all
/// its copies belong to one customer once the merges in `identity.changes` are followed; no
/// identifier was linked twice in different ways (copies of a change written again after a
/// crash are identical).
fn assert_every_event_resolved_once(
    broker: &Broker,
    registry: &str,
    events: &BTreeSet<String>,
    shoppers: usize,
) {
    let changes: Vec<Value> = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let log = KafkaLog::connect(&broker.bootstrap).expect("connects");
            let mut changes = Vec::new();
            for partition in 0..log
                .partitions("identity.changes")
                .await
                .expect("partitions")
            {
                let mut next = 0;
                loop {
                    let records = log
                        .read("identity.changes", partition, next, 5_000)
                        .await
                        .expect("read");
                    let Some(last) = records.last() else {
                        break;
                    };
                    next = last.offset + 1;
                    for record in &records {
                        changes.push(serde_json::from_slice(&record.value).expect("json"));
                    }
                }
            }
            changes
        })
    };
    let mut merged_into: BTreeMap<String, String> = BTreeMap::new();
    let mut links: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for change in &changes {
        match change["change"].as_str().expect("kind") {
            "merged" => {
                merged_into.insert(
                    change["absorbed"].as_str().expect("absorbed").to_owned(),
                    change["survivor"].as_str().expect("survivor").to_owned(),
                );
            }
            "linked" => {
                links
                    .entry(change["identifier"].to_string())
                    .or_default()
                    .insert(format!("{} {}", change["customer"], change["cause"]));
            }
            _ => {}
        }
    }
    let twice: Vec<_> = links.iter().filter(|(_, how)| how.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "identifiers linked twice: {:?}",
        &twice[..twice.len().min(5)]
    );
    let now = |mut customer: String| {
        while let Some(next) = merged_into.get(&customer) {
            customer = next.clone();
        }
        customer
    };
    let mut customers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in consume(broker, registry, "events.resolved") {
        if let Some(marker) = record.get("marker") {
            // Each customer a merge absorbed is told so, in its own partition.
            let absorbed = record["key"].as_str().expect("key");
            assert_eq!(marker["marker"], "absorbed", "{record}");
            assert_eq!(
                merged_into.get(absorbed).map(String::as_str),
                marker["into"].as_str(),
                "{record}"
            );
            continue;
        }
        customers
            .entry(record["id"].as_str().expect("id").to_owned())
            .or_default()
            .insert(now(record["key"].as_str().expect("key").to_owned()));
    }
    let resolved: BTreeSet<String> = customers.keys().cloned().collect();
    assert_eq!(
        &resolved, events,
        "every canonical event resolved, nothing else"
    );
    let split: Vec<_> = customers.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(
        split.is_empty(),
        "events with two customers: {:?}",
        &split[..split.len().min(5)]
    );
    let distinct: BTreeSet<&String> = customers.values().flatten().collect();
    eprintln!(
        "identity: {} events, {} customers, {} changes, {} merges",
        events.len(),
        distinct.len(),
        changes.len(),
        merged_into.len()
    );
    // Each shopper's events carry identifiers of their own that join up (see the producer):
    // one customer per shopper, which takes merges when a shopper's WeChat events come first.
    assert_eq!(distinct.len(), shoppers, "one customer per shopper");
}

/// The consumer lag gauges of `server`, by partition.
fn lag(server: &Server) -> BTreeMap<String, f64> {
    let text = reqwest::blocking::get(format!("{}/metrics", server.url))
        .expect("metrics")
        .text()
        .expect("text");
    text.lines()
        .filter(|line| line.starts_with("kinfold_consumer_lag{"))
        .map(|line| {
            let (labels, value) = line.rsplit_once(' ').expect("sample");
            (labels.to_owned(), value.parse().expect("number"))
        })
        .collect()
}

/// A small deterministic generator for kill times.
fn pauses(seed: u64) -> impl Iterator<Item = Duration> {
    let mut state = seed;
    std::iter::repeat_with(move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Duration::from_millis(1_000 + (state >> 33) % 3_000)
    })
}

#[test]
fn sigkill_during_ingest_loses_nothing_and_poison_goes_to_the_dlq() {
    let broker = Broker::start().expect("tansu starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let logs = kept_logs("sigkill");
    // A trigger that fires once for every customer with an order.
    let triggers = dir.path().join("triggers.toml");
    std::fs::write(
        &triggers,
        "[[trigger]]\nid = \"first-order\"\nrule = \"orders >= 1\"\nperiod = \"once\"\n",
    )
    .expect("trigger file");
    let triggers = triggers.to_str().expect("a utf-8 path").to_owned();
    let serve = |incarnation: usize| {
        serve_logging(
            &broker,
            &data,
            &logs.join(format!("kinfold-{incarnation}.log")),
            &[("KINFOLD__SEGMENTS__TRIGGERS", triggers.as_str())],
        )
    };
    let mut server = serve(0);
    for (id, rule) in SEGMENTS {
        let created = grpc_calls(
            &server,
            &serde_json::json!([{"call": "kinfold.v1.SegmentService/CreateSegment",
                                 "request": {"id": id, "rule": rule}}]),
        );
        assert_eq!(created[0]["code"], "OK", "{created:?}");
    }
    let registry = format!("{}/registry", server.url);
    let producer = Producer::start(&broker, &registry, 100_000, 10, 0, dir.path());

    for (kill, pause) in pauses(7).take(5).enumerate() {
        std::thread::sleep(pause);
        eprintln!("SIGKILL {} after {pause:?}", kill + 1);
        server.kill().expect("SIGKILL");
        server = serve(kill + 1);
    }
    let produced = producer.finish();
    assert_eq!(produced.records.len(), 100_000);
    let poison = produced
        .records
        .values()
        .filter(|what| *what != "valid")
        .count();
    eprintln!("produced 100000 records, {poison} of them poison");
    assert!((500..=1_500).contains(&poison), "about 1% poison: {poison}");

    wait_caught_up(&broker, Duration::from_secs(600));
    // The registry now lives in the restarted process.
    let registry = format!("{}/registry", server.url);
    let events = assert_every_record_landed_once(&broker, &registry, &produced);
    // Through the identity stage, killed along with ingest.
    wait_group_caught_up(
        &broker,
        "kinfold-identity-forward",
        &["events.canonical"],
        Duration::from_secs(600),
    );
    wait_group_caught_up(
        &broker,
        "kinfold-identity",
        &["identity.inputs"],
        Duration::from_secs(600),
    );
    // The profile stage appends merged customers' events to events.resolved again: it has
    // caught up before events.resolved is counted and read, or the reader may stop short.
    wait_group_caught_up(
        &broker,
        "kinfold-profile",
        &["events.resolved"],
        Duration::from_secs(600),
    );
    assert_every_event_resolved_once(&broker, &registry, &events, produced.shoppers);
    wait_group_caught_up(
        &broker,
        "kinfold-segments",
        &["profiles.changed"],
        Duration::from_secs(600),
    );

    // Lag back to zero on every partition, as the process itself reports it: 40 source
    // partitions, 8 canonical ones (identity's forward part), identity.inputs, the 8 of
    // events.resolved (the profile stage) and the 4 of profiles.changed (the segment stage).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lag = lag(&server);
        let partitions = lag.len();
        if partitions == 61 && lag.values().all(|value| *value == 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag did not return to zero: {lag:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    server.stop().expect("graceful stop");
    let customers = assert_every_event_folded_once(&broker, &data, &events, &produced.facts);
    let server = serve(99);
    assert_membership_follows_the_facts(&broker, &server, &customers, &produced.facts);
    server.stop().expect("graceful stop");
}

/// The segments the crash test defines, and the fact of `Facts` each is about.
const SEGMENTS: [(&str, &str); 2] = [("buyers", "orders >= 1"), ("returners", "returns >= 1")];

/// Through the segment stage, killed along with the others: each segment's members are the
/// live customers whose shopper the producer's records give an order (a return), and a full
/// re-evaluation of the rule over the stored profiles (a preview) counts as many; the
/// once-per-customer trigger fired exactly once for every buyer, no id twice, and for no one
/// else (a customer absorbed by a merge may have fired before it was).
fn assert_membership_follows_the_facts(
    broker: &Broker,
    server: &Server,
    customers: &Customers,
    produced: &BTreeMap<u64, Facts>,
) {
    for (segment, rule) in SEGMENTS {
        let holds = |facts: &Facts| match segment {
            "buyers" => facts.orders >= 1,
            _ => facts.returns >= 1,
        };
        let expected: BTreeSet<&str> = customers
            .live
            .iter()
            .filter(|(_, person)| holds(&produced[person]))
            .map(|(customer, _)| customer.as_str())
            .collect();
        let mut members: Vec<String> = Vec::new();
        let mut token = String::new();
        loop {
            let page = grpc_calls(
                server,
                &serde_json::json!([{"call": "kinfold.v1.SegmentService/ListMembers",
                    "request": {"segment_id": segment, "page_size": 1000, "page_token": token}}]),
            )
            .remove(0);
            assert_eq!(page["code"], "OK", "{page}");
            let response = &page["response"];
            members.extend(
                response["customer_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|id| id.as_str().expect("an id").to_owned()),
            );
            token = response["next_page_token"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if token.is_empty() {
                break;
            }
        }
        let members: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        assert_eq!(
            members.len(),
            expected.len(),
            "{segment}: members against the producer"
        );
        assert!(
            members == expected,
            "{segment}: the members are the producer's"
        );
        let preview = grpc_calls(
            server,
            &serde_json::json!([{"call": "kinfold.v1.SegmentService/PreviewSegment",
                                 "request": {"rule": rule, "from_stored_profiles": true}}]),
        )
        .remove(0);
        assert_eq!(preview["code"], "OK", "{preview}");
        let counted = preview["response"]["members"]
            .as_str()
            .map_or(0, |count| count.parse::<usize>().expect("a count"));
        assert_eq!(
            counted,
            members.len(),
            "{segment}: a full re-evaluation agrees"
        );
        eprintln!(
            "segment {segment}: {} members, as the producer's records say",
            members.len()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let firings: Vec<Value> =
        runtime.block_on(async {
            let log = KafkaLog::connect(&broker.bootstrap).expect("connects");
            let mut firings = Vec::new();
            for partition in 0..log.partitions("triggers").await.expect("triggers topic") {
                let mut from = 0;
                loop {
                    let records = log
                        .read("triggers", partition, from, 1_000)
                        .await
                        .expect("reads");
                    let Some(last) = records.last() else {
                        break;
                    };
                    from = last.offset + 1;
                    firings.extend(records.iter().map(|record| {
                        serde_json::from_slice::<Value>(&record.value).expect("json")
                    }));
                }
            }
            firings
        });
    let mut ids = BTreeSet::new();
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    for firing in &firings {
        assert!(
            ids.insert(firing["id"].as_str().expect("an id").to_owned()),
            "a firing sent twice: {firing}"
        );
        *fired
            .entry(firing["customer"].as_str().expect("a customer").to_owned())
            .or_default() += 1;
    }
    for (customer, person) in &customers.live {
        let expected = usize::from(produced[person].orders >= 1);
        assert_eq!(
            fired.get(customer).copied().unwrap_or(0),
            expected,
            "first-order firings of {customer}"
        );
    }
    for customer in fired.keys() {
        assert!(
            customers.live.contains_key(customer) || customers.absorbed.contains(customer),
            "a firing for a customer with no profile: {customer}"
        );
    }
    eprintln!("triggers: {} firings, each id once", firings.len());
}

/// Through the profile stage, killed along with the others: every resolved event is in the
/// journal of exactly one live customer, each profile folded exactly its journal, and each
/// shopper's profile (found by their member card) has the event count, orders, returns and
/// spend the producer's records add up to (0 lost, 0 applied twice); customers a merge
/// absorbed hold nothing.
fn assert_every_event_folded_once(
    broker: &Broker,
    data: &Path,
    events: &BTreeSet<String>,
    produced: &BTreeMap<u64, Facts>,
) -> Customers {
    let mut customers = Customers::default();
    let output = command(broker)
        .args(["profiles", "dump", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("kinfold profiles dump runs");
    assert!(
        output.status.success(),
        "profiles dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut journals: BTreeMap<String, String> = BTreeMap::new();
    let mut shoppers: BTreeSet<u64> = BTreeSet::new();
    let (mut live, mut absorbed) = (0, 0);
    for line in String::from_utf8(output.stdout).expect("utf-8").lines() {
        let profile: Value = serde_json::from_str(line).expect("json");
        let customer = profile["customer"].as_str().expect("customer").to_owned();
        let journal = profile["journal"].as_array().expect("journal");
        if !profile["merged_into"].is_null() {
            absorbed += 1;
            customers.absorbed.insert(customer.clone());
            assert!(
                journal.is_empty(),
                "an absorbed customer keeps events: {profile}"
            );
            continue;
        }
        live += 1;
        assert_eq!(
            profile["events"].as_u64(),
            Some(journal.len() as u64),
            "folded events and journal disagree: {profile}"
        );
        let cards: Vec<u64> = profile["identifiers"]
            .as_array()
            .expect("identifiers")
            .iter()
            .filter_map(|identifier| {
                let identifier = identifier.as_str().expect("an identifier");
                identifier
                    .strip_prefix("member_card:")?
                    .rsplit_once(":LX88")?
                    .1
                    .parse()
                    .ok()
            })
            .collect();
        let [person] = cards[..] else {
            panic!("a shopper's profile holds one member card: {profile}");
        };
        let money = &profile["money"]["CNY"];
        let folded = Facts {
            events: profile["events"].as_u64().expect("events"),
            orders: profile["orders"].as_u64().expect("orders"),
            returns: profile["returns"].as_u64().expect("returns"),
            gross_minor: money["gross_minor"].as_i64().unwrap_or(0),
            returned_minor: money["returned_minor"].as_i64().unwrap_or(0),
        };
        assert_eq!(
            Some(&folded),
            produced.get(&person),
            "shopper {person}'s profile against the producer's records"
        );
        assert!(
            shoppers.insert(person),
            "shopper {person} has two live profiles"
        );
        customers.live.insert(customer.clone(), person);
        for event in journal {
            let event = event.as_str().expect("event id").to_owned();
            if let Some(other) = journals.insert(event.clone(), customer.clone()) {
                panic!("event {event} in the journals of {other} and {customer}");
            }
        }
    }
    let folded: BTreeSet<String> = journals.into_keys().collect();
    assert_eq!(folded.len(), events.len(), "events folded");
    assert!(&folded == events, "the folded events are the resolved ones");
    assert_eq!(
        shoppers.len(),
        produced.len(),
        "every shopper has a profile"
    );
    let total = |facts: &mut dyn Iterator<Item = Facts>| {
        facts.fold(Facts::default(), |sum, one| Facts {
            events: sum.events + one.events,
            orders: sum.orders + one.orders,
            returns: sum.returns + one.returns,
            gross_minor: sum.gross_minor + one.gross_minor,
            returned_minor: sum.returned_minor + one.returned_minor,
        })
    };
    eprintln!(
        "profiles against the producer: {:?}",
        total(&mut produced.values().copied())
    );
    eprintln!(
        "profiles: {live} customers, {absorbed} absorbed, {} events folded",
        folded.len()
    );
    customers
}

/// The customers the profile store holds: each live one with its shopper, and those a merge
/// absorbed.
#[derive(Debug, Default)]
struct Customers {
    live: BTreeMap<String, u64>,
    absorbed: BTreeSet<String>,
}

/// One audit line of a process's JSON log.
#[derive(Debug)]
struct Audit {
    at: String,
    action: String,
    member: String,
    partition: String,
}

fn audit_lines(dir: &Path) -> Vec<Audit> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("logs") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("log");
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if value["target"] != "kinfold::audit" {
                continue;
            }
            let fields = &value["fields"];
            lines.push(Audit {
                at: value["timestamp"].as_str().expect("timestamp").to_owned(),
                action: fields["action"].as_str().expect("action").to_owned(),
                member: fields["member"].as_str().expect("member").to_owned(),
                partition: format!(
                    "{}/{}",
                    fields["topic"].as_str().expect("topic"),
                    fields["partition"]
                ),
            });
        }
    }
    lines.sort_by(|a, b| a.at.cmp(&b.at));
    lines
}

#[test]
fn two_processes_rebalancing_lose_nothing_and_commit_only_what_they_own() {
    let broker = Broker::start().expect("tansu starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = kept_logs("two_processes");
    // The schema registry of the deployment: a Kinfold that runs no stage, only HTTP. The two
    // ingest processes use it by URL, as they would a Confluent Schema Registry.
    let registry_only = dir.path().join("registry-only.toml");
    std::fs::write(&registry_only, "[serve]\nstages = []\n").expect("config");
    let mut registry_command = command(&broker);
    registry_command.env("KINFOLD_CONFIG", &registry_only);
    let registry_server = Server::start_command(registry_command, &dir.path().join("registry"))
        .expect("the registry process starts");
    let registry = format!("{}/registry", registry_server.url);
    let start = |slot: &str, incarnation: usize| {
        serve_logging(
            &broker,
            &dir.path().join(slot),
            &logs.join(format!("{slot}-{incarnation}.log")),
            // The ingest stage only: its audit is what this test reads.
            &[
                ("KINFOLD__REGISTRY__URL", &registry),
                ("KINFOLD__SERVE__STAGES", "[ingest]"),
            ],
        )
    };
    let mut a = start("a", 0);
    let mut b = start("b", 0);
    let answer = reqwest::blocking::get(format!("{}/registry/subjects", a.url)).expect("get");
    assert_eq!(
        answer.status(),
        404,
        "an ingest process points at the shared registry"
    );
    // Records keep flowing through every round, so batches are in flight at each hand-over.
    let producer = Producer::start(&broker, &registry, 40_000, 0, 800, dir.path());

    // Each round takes one process out of the group and back in: two rebalances.
    for (round, pause) in pauses(11).take(6).enumerate() {
        std::thread::sleep(pause);
        if round % 2 == 0 {
            b.stop().expect("b stops");
            std::thread::sleep(Duration::from_secs(2));
            b = start("b", round + 1);
        } else {
            a.stop().expect("a stops");
            std::thread::sleep(Duration::from_secs(2));
            a = start("a", round + 1);
        }
        eprintln!("round {round} done");
    }
    let produced = producer.finish();
    wait_caught_up(&broker, Duration::from_secs(600));
    assert_every_record_landed_once(&broker, &registry, &produced);
    a.stop().expect("a stops");
    b.stop().expect("b stops");
    registry_server.stop().expect("the registry process stops");

    // The audit: partitions change hands only after their owner let go, and every commit comes
    // from the member that owns the partition at that moment.
    let audit = audit_lines(&logs);
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let mut last_owner: BTreeMap<String, String> = BTreeMap::new();
    let (mut commits, mut handovers) = (0, 0);
    for line in &audit {
        match line.action.as_str() {
            "owned" => {
                assert!(
                    !owner.contains_key(&line.partition),
                    "{} owned by {} while {:?} still owns it ({})",
                    line.partition,
                    line.member,
                    owner.get(&line.partition),
                    line.at
                );
                if last_owner
                    .get(&line.partition)
                    .is_some_and(|last| *last != line.member)
                {
                    handovers += 1;
                }
                owner.insert(line.partition.clone(), line.member.clone());
            }
            "released" => {
                assert_eq!(
                    owner.remove(&line.partition).as_deref(),
                    Some(line.member.as_str()),
                    "{line:?}"
                );
                last_owner.insert(line.partition.clone(), line.member.clone());
            }
            "commit" => {
                assert_eq!(
                    owner.get(&line.partition).map(String::as_str),
                    Some(line.member.as_str()),
                    "a commit for a partition its committer did not own: {line:?}"
                );
                commits += 1;
            }
            other => panic!("unknown audit action {other}"),
        }
    }
    let members: BTreeSet<&str> = audit.iter().map(|line| line.member.as_str()).collect();
    eprintln!(
        "audit: {} lines, {commits} commits, {handovers} hand-overs, {} members",
        audit.len(),
        members.len()
    );
    assert!(commits >= 100, "commits all through the rounds: {commits}");
    assert_eq!(members.len(), 8, "two first members and six restarts");
    assert!(
        handovers >= 40,
        "every partition changed hands at least 10 times in all: {handovers}"
    );
    assert!(
        owner.is_empty(),
        "every partition released on graceful stops: {owner:?}"
    );
}

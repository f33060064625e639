//! The identity stage over the embedded log: canonical events written by the ingest writer are
//! forwarded to `identity.inputs`, resolved, and land in `events.resolved` keyed by customer,
//! with their changes in `identity.changes`. Expected customers are worked out by hand from the
//! default rules. A second resolve run, starting with no graph in memory, loads it from its
//! state in the key-value store and applies a split written to `identity.inputs` as a
//! decision; a third, with no state, rebuilds it from the input log; inputs delivered twice
//! change nothing.

use kinfold_benches::generator::{Generator, GeneratorConfig};
use kinfold_core::EventId;
use kinfold_core::ports::{EventLog, OutgoingRecord};
use kinfold_core::stage::{Processor, StageReport};
use kinfold_core::time::FixedClock;
use kinfold_identity::model::{Change, CustomerId, Input, Rules};
use kinfold_identity::records::{InputRecord, ResolvedMarker};
use kinfold_identity::stage::{ForwardProcessor, IdentityTopics, ResolveProcessor};
use kinfold_ingest::{IngestLimits, IngestWriter, Intake, Origin, Topics};
use kinfold_schemas::{Catalog, SchemaRegistry};
use kinfold_storage::EmbeddedDatabase;
use kinfold_tests::shoppers::story;
use std::collections::BTreeMap;
use std::sync::Arc;

struct Fixture {
    log: Arc<dyn EventLog>,
    kv: Arc<dyn kinfold_core::ports::KvStore>,
    registry: Arc<SchemaRegistry>,
    intake: Intake,
    writer: IngestWriter,
    topics: IdentityTopics,
}

async fn fixture(database: &EmbeddedDatabase) -> Fixture {
    let log: Arc<dyn EventLog> = Arc::new(database.log());
    let kv = Arc::new(database.kv());
    let registry = Arc::new(SchemaRegistry::open(kv.clone()).await.expect("registry"));
    registry
        .register_catalog(&Catalog::embedded())
        .await
        .expect("catalog");
    // One canonical partition, so that the events reach the graph in the order written.
    let canonical = Topics {
        canonical_partitions: 1,
        ..Topics::default()
    };
    let writer = IngestWriter::start(log.clone(), kv, &registry, canonical)
        .await
        .expect("writer");
    let intake = Intake::new(
        registry.clone(),
        IngestLimits::default(),
        Arc::new(FixedClock(1_795_176_000_000_000)),
    );
    // One partition of changes, so that reading them back gives them in the order written.
    let topics = IdentityTopics {
        changes_partitions: 1,
        ..IdentityTopics::default()
    };
    topics.ensure(log.as_ref()).await.expect("topics");
    Fixture {
        log,
        kv: Arc::new(database.kv()),
        registry,
        intake,
        writer,
        topics,
    }
}

/// Runs `processor` over `topic` until its group has committed every partition's end.
async fn run_until_caught_up<P: Processor>(
    fixture: &Fixture,
    processor: P,
    group: &str,
    topic: &str,
    max_in_flight: usize,
) -> StageReport<P::Tally> {
    run_in_batches(fixture, processor, group, topic, max_in_flight, 2).await
}

/// [`run_until_caught_up`], handing over at most `batch` records at a time.
async fn run_in_batches<P: Processor>(
    fixture: &Fixture,
    processor: P,
    group: &str,
    topic: &str,
    max_in_flight: usize,
    batch: usize,
) -> StageReport<P::Tally> {
    kinfold_tests::run_stage_until_caught_up(
        fixture.log.clone(),
        processor,
        group,
        topic,
        max_in_flight,
        batch,
    )
    .await
}

/// Forwards every canonical record to `identity.inputs`, `batch` at a time, 8 batches at once.
async fn forward(fixture: &Fixture, batch: usize) {
    let processor = ForwardProcessor::new(
        fixture.log.clone(),
        fixture.topics.clone(),
        "identity-forward",
    );
    run_in_batches(
        fixture,
        processor,
        "identity-forward",
        "events.canonical",
        8,
        batch,
    )
    .await;
}

/// Every record of `topic`, from every partition.
async fn all(log: &dyn EventLog, topic: &str) -> Vec<kinfold_core::ports::LogRecord> {
    let mut records = Vec::new();
    for partition in 0..log.partitions(topic).await.expect("partitions") {
        records.extend(log.read(topic, partition, 0, 100_000).await.expect("read"));
    }
    records
}

/// The customer (record key) of each resolved event, by event id; all copies must agree.
async fn resolved(fixture: &Fixture) -> BTreeMap<EventId, CustomerId> {
    let mut customers = BTreeMap::new();
    for record in all(fixture.log.as_ref(), &fixture.topics.resolved).await {
        if ResolvedMarker::of_record(&record.value).is_some() {
            continue;
        }
        let event =
            kinfold_schemas::codec::decode_framed_canonical(&record.value, &fixture.registry)
                .expect("a canonical frame");
        let key = String::from_utf8(record.key.expect("keyed").to_vec()).expect("utf-8");
        let customer = CustomerId(key.parse().expect("a customer id"));
        if let Some(earlier) = customers.insert(event.event_id, customer) {
            assert_eq!(earlier, customer, "copies of {} disagree", event.event_id);
        }
    }
    customers
}

async fn changes(fixture: &Fixture) -> Vec<Change> {
    all(fixture.log.as_ref(), &fixture.topics.changes)
        .await
        .iter()
        .map(|record| serde_json::from_slice(&record.value).expect("a change"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resolve_to_customers_and_a_split_moves_them_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = EmbeddedDatabase::open(dir.path()).expect("opens");
    let fixture = fixture(&database).await;
    let origin = Origin::channel("test");
    let events = story();
    let mut ids = Vec::new();
    for event in &events {
        let outcome = fixture
            .writer
            .submit(vec![fixture.intake.json(&event.to_string(), &origin)])
            .await
            .expect("written");
        let kinfold_ingest::IngestOutcome::Accepted { event_id, .. } = &outcome[0] else {
            panic!("accepted: {outcome:?}");
        };
        ids.push(event_id.parse::<EventId>().expect("an event id"));
    }
    forward(&fixture, 2).await;
    assert_eq!(
        all(fixture.log.as_ref(), &fixture.topics.inputs)
            .await
            .len(),
        5
    );
    let stateless = || {
        ResolveProcessor::new(
            fixture.log.clone(),
            fixture.registry.clone(),
            Rules::default_rules(),
            fixture.topics.clone(),
        )
    };
    let resolve = || stateless().with_state(fixture.kv.clone());
    let report = run_until_caught_up(&fixture, resolve(), "identity", "identity.inputs", 1).await;
    assert_eq!(report.tally.events, 5);
    assert_eq!(report.tally.unreadable, 0);

    // By hand, with the default rules: the member (card M1) and the shopper (openid o-1 and its
    // unionid) are two customers until the member gives the phone the shopper bound; then the
    // member, created first, absorbs the shopper. The second shopper is a third customer.
    let member = CustomerId::first_seen_in(&ids[0]);
    let shopper = CustomerId::first_seen_in(&ids[1]);
    let other = CustomerId::first_seen_in(&ids[4]);
    let expected: BTreeMap<EventId, CustomerId> = ids
        .iter()
        .copied()
        .zip([member, shopper, shopper, member, other])
        .collect();
    assert_eq!(resolved(&fixture).await, expected);
    let first_changes = changes(&fixture).await;
    assert!(first_changes.iter().any(|change| matches!(
        change,
        Change::Merged { survivor, absorbed, .. } if (*survivor, *absorbed) == (member, shopper)
    )));

    // A person splits them, through identity.inputs; and every event is delivered again.
    let split = InputRecord::Decision(Input::Split {
        customer: member,
        restored: shopper,
        reason: "two people".into(),
    });
    let mut again = vec![split.outgoing(0)];
    for record in all(fixture.log.as_ref(), "events.canonical").await {
        again.push(InputRecord::Event(record.value).outgoing(0));
    }
    fixture
        .log
        .append(&fixture.topics.inputs, again)
        .await
        .expect("appended");
    // A fresh processor (as after a restart): it loads the graph from its state.
    let report = run_until_caught_up(&fixture, resolve(), "identity", "identity.inputs", 1).await;
    assert_eq!(
        (
            report.tally.loaded_from_state,
            report.tally.rebuilt_from_log
        ),
        (1, 0)
    );
    assert_eq!(report.tally.decisions, 1);
    assert_eq!(report.tally.refused_decisions, 0);
    assert_eq!(report.tally.events, 5, "the deliveries again");
    let later: Vec<Change> = changes(&fixture).await[first_changes.len()..].to_vec();
    let moved: Vec<(EventId, Option<CustomerId>, Option<CustomerId>)> = later
        .iter()
        .filter_map(|change| match change {
            Change::Moved { event_id, from, to } => Some((*event_id, *from, *to)),
            _ => None,
        })
        .collect();
    assert!(
        matches!(later[0], Change::Split { customer, restored, .. } if (customer, restored) == (member, shopper))
    );
    assert_eq!(
        moved,
        vec![
            (ids[1], Some(member), Some(shopper)),
            (ids[2], Some(member), Some(shopper)),
        ],
        "the shopper's events go back to the shopper"
    );
    assert_eq!(
        later.len(),
        3,
        "events delivered again change nothing: {later:?}"
    );
    // The copies written again carry the customers the events belong to now.
    assert_eq!(resolved(&fixture).await, expected);

    // Without a state, a processor rebuilds the graph by reading identity.inputs: the same
    // graph, so one more delivery of an event changes nothing there either.
    let first = all(fixture.log.as_ref(), "events.canonical")
        .await
        .remove(0);
    fixture
        .log
        .append(
            &fixture.topics.inputs,
            vec![InputRecord::Event(first.value).outgoing(0)],
        )
        .await
        .expect("appended");
    let report = run_until_caught_up(&fixture, stateless(), "identity", "identity.inputs", 1).await;
    assert_eq!(
        (
            report.tally.loaded_from_state,
            report.tally.rebuilt_from_log
        ),
        (0, 1)
    );
    assert_eq!(report.tally.changes, 0);
    assert_eq!(changes(&fixture).await.len(), first_changes.len() + 3);
    assert_eq!(resolved(&fixture).await, expected);
}

/// Copies every record of `topic` in `from`, partition by partition and in order, to `to`.
async fn copy_topic(from: &Fixture, to: &Fixture, topic: &str) {
    for partition in 0..from.log.partitions(topic).await.expect("partitions") {
        let records: Vec<OutgoingRecord> = from
            .log
            .read(topic, partition, 0, 1_000_000)
            .await
            .expect("read")
            .into_iter()
            .map(|record| OutgoingRecord {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp_millis: record.timestamp_millis,
                partition: Some(partition),
            })
            .collect();
        to.log.append(topic, records).await.expect("copied");
    }
}

fn resolver(fixture: &Fixture) -> ResolveProcessor {
    ResolveProcessor::new(
        fixture.log.clone(),
        fixture.registry.clone(),
        Rules::default_rules(),
        fixture.topics.clone(),
    )
    .with_state(fixture.kv.clone())
}

/// The digest of the graph kept in `fixture`'s state, loaded by a fresh processor.
async fn stored_digest(fixture: &Fixture) -> String {
    let processor = resolver(fixture);
    let report = processor.prepare(0).await.expect("loads");
    assert_eq!((report.loaded_from_state, report.rebuilt_from_log), (1, 0));
    processor
        .shared()
        .read(|graph| graph.digest())
        .expect("a graph")
}

/// Forwards and resolves everything in `fixture`, `batch` records at a time. Returns the digest
/// of the graph in memory and the events' customers.
async fn forward_and_resolve(
    fixture: &Fixture,
    batch: usize,
    inputs_from_start: u64,
) -> (String, BTreeMap<EventId, CustomerId>) {
    forward(fixture, batch).await;
    let inputs = kinfold_tests::total_records(fixture.log.as_ref(), &fixture.topics.inputs).await;
    assert!(inputs > inputs_from_start);
    let resolve = resolver(fixture);
    let graph = resolve.shared();
    run_in_batches(fixture, resolve, "identity", "identity.inputs", 1, batch).await;
    let digest = graph.read(|graph| graph.digest()).expect("a graph");
    (digest, resolved(fixture).await)
}

/// Replaying the log from the start into a fresh state gives the same graph, byte for byte,
/// whatever the batch size, and the graph kept in the state is the graph in memory:
/// - `events.canonical` (one partition, so one order) copied into a fresh store and resolved
///   there in batches of 1, 7, 64 and 5,000 gives the digest of the first run (batches of 500);
/// - with decisions by hand in `identity.inputs` (a merge, a split, an erasure), copying
///   `identity.inputs` (which holds every canonical frame as the graph saw it, and the
///   decisions) into a fresh store and resolving it in batches of 1, 13 and 5,000 gives the
///   digest of the live graph.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_into_a_fresh_state_gives_the_same_digest_at_any_batch_size() {
    let live_dir = tempfile::tempdir().expect("temp dir");
    let live_database = EmbeddedDatabase::open(live_dir.path()).expect("opens");
    let live = fixture(&live_database).await;
    // A small population over a long window: people come back on other channels, so customers
    // meet and merge.
    let mut generator = Generator::new(GeneratorConfig {
        customers: 150,
        days: 120,
        ..GeneratorConfig::default()
    });
    let origin = Origin::channel("replay-test");
    for chunk in generator.take_events(3_000).chunks(250) {
        let submissions = chunk
            .iter()
            .map(|body| {
                live.intake
                    .record(body.clone(), b"generated", &origin, None)
            })
            .collect();
        live.writer.submit(submissions).await.expect("written");
    }
    let (live_digest, live_customers) = forward_and_resolve(&live, 500, 0).await;
    // The forward part keeps the canonical partition's order, batches in flight or not.
    let canonical: Vec<_> = all(live.log.as_ref(), "events.canonical")
        .await
        .into_iter()
        .map(|record| InputRecord::Event(record.value))
        .collect();
    let inputs: Vec<_> = all(live.log.as_ref(), &live.topics.inputs)
        .await
        .iter()
        .map(|record| InputRecord::decode(&record.value).expect("an input"))
        .collect();
    assert!(canonical == inputs, "identity.inputs in canonical order");
    assert_eq!(stored_digest(&live).await, live_digest);
    let merges = changes(&live)
        .await
        .iter()
        .filter(|change| matches!(change, Change::Merged { .. }))
        .count();
    assert!(merges > 10, "the history merges customers: {merges}");
    assert!(live_customers.len() > 2_000, "{}", live_customers.len());

    for (run, batch) in [1, 7, 64, 5_000].into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = EmbeddedDatabase::open(dir.path()).expect("opens");
        let fresh = fixture(&database).await;
        copy_topic(&live, &fresh, "events.canonical").await;
        let (digest, customers) = forward_and_resolve(&fresh, batch, 0).await;
        assert_eq!(digest, live_digest, "run {run}: batches of {batch}");
        assert_eq!(
            stored_digest(&fresh).await,
            live_digest,
            "batches of {batch}"
        );
        assert_eq!(customers, live_customers, "batches of {batch}");
    }

    // Decisions by hand, between events: merge two customers, split them again, erase one.
    let customers: Vec<CustomerId> = live_customers
        .values()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (a, b, c) = (customers[0], customers[1], customers[2]);
    let decisions = [
        Input::Merge {
            survivor: a,
            absorbed: b,
            reason: "the same person".into(),
        },
        Input::Split {
            customer: a,
            restored: b,
            reason: "not the same person after all".into(),
        },
        Input::Erase {
            customer: c,
            reason: "asked to be forgotten".into(),
        },
    ];
    let before = kinfold_tests::total_records(live.log.as_ref(), &live.topics.inputs).await;
    let resolve = resolver(&live);
    let graph = resolve.shared();
    for decision in decisions {
        live.log
            .append(
                &live.topics.inputs,
                vec![InputRecord::Decision(decision).outgoing(0)],
            )
            .await
            .expect("appended");
    }
    let report = run_in_batches(&live, resolve, "identity", "identity.inputs", 1, 500).await;
    assert_eq!(
        (report.tally.decisions, report.tally.refused_decisions),
        (3, 0)
    );
    let decided_digest = graph.read(|graph| graph.digest()).expect("a graph");
    assert_ne!(decided_digest, live_digest, "the erasure changed the graph");
    assert_eq!(stored_digest(&live).await, decided_digest);
    for batch in [1, 13, 5_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = EmbeddedDatabase::open(dir.path()).expect("opens");
        let fresh = fixture(&database).await;
        copy_topic(&live, &fresh, &live.topics.inputs).await;
        let resolve = resolver(&fresh);
        let graph = resolve.shared();
        let report = run_in_batches(&fresh, resolve, "identity", "identity.inputs", 1, batch).await;
        assert_eq!(report.records, before + 3, "batches of {batch}");
        assert_eq!(
            graph.read(|graph| graph.digest()).expect("a graph"),
            decided_digest,
            "identity.inputs in batches of {batch}"
        );
        assert_eq!(stored_digest(&fresh).await, decided_digest);
    }
}

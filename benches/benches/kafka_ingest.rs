//! Kafka ingest throughput: Kinfold's ingest stage against a plain rdkafka consumer that only
//! decodes, over the same pre-produced records on the same broker, in the same run.
//!
//! - Broker: tansu on loopback (SQLite engine), started by the bench (`scripts/test` installs
//!   it; `KINFOLD_TANSU` points at another binary).
//! - Records: the generator's events (every family), framed Avro with the registry's schema
//!   ids, produced once to a source topic of 8 partitions (1,000,000; 20,000 with
//!   `KINFOLD_BENCH_QUICK=1`).
//! - Baseline: an rdkafka `BaseConsumer` assigned every partition from offset 0, which parses
//!   each frame, looks the writer schema up and decodes the datum (the same decoder Kinfold
//!   uses), and does nothing else.
//! - Kinfold: the ingest stage as `kinfold serve --log kafka://` runs it: a consumer-group
//!   member, decode and validate, canonical events appended to `events.canonical` on the same
//!   broker (idempotent producer, acks=all) with the duplicate index in the embedded store,
//!   offsets committed after the appends. Timed until the group has committed every partition's
//!   end.
//!
//! Prints both rates and their ratio (Kinfold / baseline; the goal is at least 0.5).

use bytes::Bytes;
use kinfold_benches::{Generator, GeneratorConfig, quick};
use kinfold_core::ports::{EventLog, GroupOptions, OutgoingRecord};
use kinfold_core::stage::{StageConfig, StageStatus};
use kinfold_core::time::FixedClock;
use kinfold_ingest::stage::{IngestProcessor, run_ingest_stage};
use kinfold_ingest::{IngestLimits, IngestWriter, Intake, Topics};
use kinfold_schemas::codec::{Codecs, family_subject};
use kinfold_schemas::{Catalog, SchemaRegistry, frame, parse_frame};
use kinfold_storage::EmbeddedDatabase;
use kinfold_storage::kafka::KafkaLog;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOURCE: &str = "bench.source";
const PARTITIONS: u32 = 8;
/// 2040-01-01: after every generated event (a million of them run past 2027).
const RECEIVE_TIME: i64 = 2_208_988_800_000_000;

async fn produce(log: &KafkaLog, registry: &SchemaRegistry, count: usize) -> u64 {
    let codecs = Codecs::new();
    let mut generator = Generator::new(GeneratorConfig::default());
    let mut bytes = 0;
    let mut left = count;
    while left > 0 {
        let chunk = left.min(20_000);
        left -= chunk;
        let records: Vec<OutgoingRecord> = generator
            .take_events(chunk)
            .into_iter()
            .map(|body| {
                let id = registry
                    .latest_id(family_subject(body.family()))
                    .expect("family subject");
                let value = frame(id, &codecs.encode_family(&body).expect("encodes"));
                bytes += value.len() as u64;
                OutgoingRecord {
                    key: Some(Bytes::from(body.natural_key())),
                    value: Bytes::from(value),
                    ..OutgoingRecord::default()
                }
            })
            .collect();
        log.append(SOURCE, records).await.expect("produce");
    }
    bytes
}

/// The plain consumer: poll, parse the frame, decode. Returns the records decoded.
fn baseline(bootstrap: &str, registry: &SchemaRegistry, count: usize) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-plain")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(SOURCE, partition as i32, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut decoded = 0;
    let deadline = Instant::now() + Duration::from_secs(1_800);
    while decoded < count {
        assert!(
            Instant::now() < deadline,
            "the baseline stalled at {decoded}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("message");
        let (id, datum) = parse_frame(message.payload().expect("payload")).expect("frame");
        let writer = registry.schema_by_id(id).expect("known schema");
        let family = writer.family.expect("a family schema");
        std::hint::black_box(
            kinfold_schemas::codec::decode_family(family, datum, &writer.fast).expect("decodes"),
        );
        decoded += 1;
    }
    decoded
}

/// Kinfold's ingest stage until its group has committed the end of every partition.
async fn kinfold(log: Arc<KafkaLog>, database: &EmbeddedDatabase, registry: Arc<SchemaRegistry>) {
    let writer = IngestWriter::start(
        log.clone(),
        Arc::new(database.kv()),
        &registry,
        Topics::default(),
    )
    .await
    .expect("writer");
    let intake = Intake::new(
        registry,
        IngestLimits::default(),
        Arc::new(FixedClock(RECEIVE_TIME)),
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let status = Arc::new(StageStatus::default());
    let mut config = StageConfig::new("ingest");
    config.commit_interval = Duration::from_millis(200);
    let stage = tokio::spawn(run_ingest_stage(
        log.clone(),
        IngestProcessor::new(intake, writer),
        GroupOptions::new("bench-kinfold", vec![SOURCE.to_owned()]),
        config,
        status,
        shutdown,
    ));
    let mut ends = Vec::new();
    for partition in 0..PARTITIONS {
        ends.push(
            log.watermarks(SOURCE, partition)
                .await
                .expect("watermarks")
                .1,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(3_600);
    'wait: loop {
        assert!(Instant::now() < deadline, "the ingest stage stalled");
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (partition, end) in ends.iter().enumerate() {
            let committed = log
                .committed("bench-kinfold", SOURCE, partition as u32)
                .await
                .expect("committed")
                .unwrap_or(0);
            if committed < *end {
                continue 'wait;
            }
        }
        break;
    }
    stop.send(true).expect("stop");
    let report = stage.await.expect("stage task").expect("stage ran");
    assert_eq!(
        report.tally.accepted + report.tally.duplicates + report.tally.rejected,
        report.records
    );
    assert_eq!(report.tally.rejected, 0, "generated events are valid");
}

fn main() {
    let count = if quick() { 20_000 } else { 1_000_000 };
    let broker = kinfold_tests::Broker::start().expect("tansu starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let database = EmbeddedDatabase::open(dir.path()).expect("embedded store");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let log = Arc::new(KafkaLog::connect(&broker.bootstrap).expect("connects"));
    let registry = runtime.block_on(async {
        let registry = SchemaRegistry::open(Arc::new(database.kv()))
            .await
            .expect("registry");
        registry
            .register_catalog(&Catalog::embedded())
            .await
            .expect("catalog");
        log.ensure_topic(SOURCE, PARTITIONS).await.expect("topic");
        Arc::new(registry)
    });
    let started = Instant::now();
    let bytes = runtime.block_on(produce(&log, &registry, count));
    println!(
        "produced {count} records ({:.1} MB of framed Avro) in {:.1?}",
        bytes as f64 / 1e6,
        started.elapsed()
    );

    let started = Instant::now();
    let decoded = baseline(&broker.bootstrap, &registry, count);
    let baseline_secs = started.elapsed().as_secs_f64();
    assert_eq!(decoded, count);
    println!("plain rdkafka consumer + decode: {count} records in {baseline_secs:.1} s");

    let started = Instant::now();
    runtime.block_on(kinfold(log, &database, registry));
    let kinfold_secs = started.elapsed().as_secs_f64();

    let baseline_rate = count as f64 / baseline_secs;
    let kinfold_rate = count as f64 / kinfold_secs;
    println!(
        "kafka ingest, {count} records: kinfold ingest stage {kinfold_rate:.0} rec/s ({kinfold_secs:.1} s), plain rdkafka consumer + decode {baseline_rate:.0} rec/s ({baseline_secs:.1} s), ratio {:.2}",
        kinfold_rate / baseline_rate
    );
}

//! Durable append throughput: Kinfold's embedded event log against raw fjall with the same
//! durability, in the same run, each run on a fresh database in a fresh temporary directory.
//!
//! Records: 36-byte uuid-string keys and values that are framed canonical events (Avro, the
//! generator's events run through `canonicalise`), as ingest appends them to
//! `events.canonical`.
//!
//! - Kinfold: `EmbeddedLog::append("t", batch)` on a topic of 8 partitions; every call returns
//!   once its records are durable (one fjall batch plus `persist(SyncAll)` on the writer thread,
//!   which folds whatever appends are waiting into that one batch: group commit).
//! - raw fjall: one `WriteBatch` of the same records into one keyspace, keyed like Kinfold
//!   (partition u32 BE + offset u64 BE, partition by Kafka's murmur2 of the key), value = the
//!   record key followed by the record value, then `db.persist(PersistMode::SyncAll)`; per
//!   batch, per producer.
//!
//! Scenarios: one producer with batches of 100; 8 concurrent producers with batches of 10
//! (tokio tasks for Kinfold, std threads for fjall, each doing its own batch and fsync); one
//! producer with batches of 1. The record count of each scenario is calibrated on raw fjall so
//! that one run takes about a second; Kinfold and fjall runs alternate, and the median is
//! reported. After every run the records are counted back.
//!
//! Temporary directories are made under `$TMPDIR` (default `/tmp`): point it at the disk to
//! measure. `KINFOLD_BENCH_QUICK=1` makes runs about ten times shorter, for CI.
//! `KINFOLD_BENCH_VALUE_BYTES=600` makes every value exactly that long (framed canonical
//! events run on into the next ones, cut at that length) instead of one canonical event each.

use bytes::Bytes;
use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use kinfold_benches::{Generator, GeneratorConfig, median, quick};
use kinfold_core::partitioner::partition_for_key;
use kinfold_core::ports::{EventLog, OutgoingRecord};
use kinfold_ingest::{IngestLimits, canonicalise};
use kinfold_schemas::codec::Codecs;
use kinfold_schemas::frame;
use kinfold_storage::{EmbeddedDatabase, EmbeddedLog};
use std::time::{Duration, Instant};

const TOPIC: &str = "t";
const PARTITIONS: u32 = 8;
/// Distinct values, cycled.
const VALUE_POOL: usize = 4096;
/// The receive time given to `canonicalise`: 2027-01-01, after every generated event.
const RECEIVE_TIME: i64 = 1_798_761_600_000_000;
/// The record timestamp (Kafka's, milliseconds).
const TIMESTAMP_MILLIS: i64 = RECEIVE_TIME / 1000;

/// The length of a uuid string.
const KEY_LEN: usize = 36;

/// Keys and values, shared by every run.
struct Payload {
    /// Every key, back to back: key `i` is `keys[i * KEY_LEN..(i + 1) * KEY_LEN]`.
    keys: Bytes,
    values: Vec<Bytes>,
}

impl Payload {
    fn new(max_records: usize) -> Self {
        let codecs = Codecs::new();
        let limits = IngestLimits::default();
        let mut generator = Generator::new(GeneratorConfig::default());
        let mut values = Vec::with_capacity(VALUE_POOL);
        while values.len() < VALUE_POOL {
            let body = generator.next_event();
            let Ok(canonical) = canonicalise(body, "bench", RECEIVE_TIME, &limits) else {
                continue;
            };
            let datum = codecs
                .encode_canonical(&canonical.event)
                .expect("a canonical event encodes");
            // The log treats values as opaque bytes; the schema id only makes the size right.
            values.push(frame(1, &datum));
        }
        if let Some(length) = std::env::var("KINFOLD_BENCH_VALUE_BYTES")
            .ok()
            .and_then(|text| text.parse::<usize>().ok())
        {
            let all: Vec<u8> = values.concat();
            for (index, value) in values.iter_mut().enumerate() {
                *value = all
                    .iter()
                    .cycle()
                    .skip(index * 97)
                    .take(length)
                    .copied()
                    .collect();
            }
        }
        let values = values.into_iter().map(Bytes::from).collect();
        let mut keys = Vec::with_capacity(max_records * KEY_LEN);
        for index in 0..max_records as u64 {
            keys.extend_from_slice(uuid_key(index).as_bytes());
        }
        Self {
            keys: Bytes::from(keys),
            values,
        }
    }

    /// The most records a run can have.
    fn max_records(&self) -> usize {
        self.keys.len() / KEY_LEN
    }

    fn key(&self, index: usize) -> Bytes {
        self.keys.slice(index * KEY_LEN..(index + 1) * KEY_LEN)
    }

    fn value(&self, index: usize) -> &Bytes {
        &self.values[index % self.values.len()]
    }

    fn average_value_len(&self) -> f64 {
        self.values.iter().map(Bytes::len).sum::<usize>() as f64 / self.values.len() as f64
    }

    /// Kinfold's records `range`.
    fn outgoing(&self, range: std::ops::Range<usize>) -> Vec<OutgoingRecord> {
        range
            .map(|index| OutgoingRecord {
                key: Some(self.key(index)),
                value: self.value(index).clone(),
                headers: Vec::new(),
                timestamp_millis: TIMESTAMP_MILLIS,
                partition: None,
            })
            .collect()
    }
}

/// A deterministic, distinct, uuid-shaped (8-4-4-4-12 hex, 36 bytes) key.
fn uuid_key(index: u64) -> String {
    let mix = |mut x: u64| {
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    let high = mix(index);
    // Keep the index in the low half so keys never collide.
    let low = (mix(!index) & 0xffff_ffff_0000_0000) | (index & 0xffff_ffff);
    let text = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        ((low >> 48) & 0x3fff) | 0x8000,
        low & 0xffff_ffff_ffff,
    );
    assert_eq!(text.len(), KEY_LEN);
    text
}

fn record_key(partition: u32, offset: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&partition.to_be_bytes());
    key[4..].copy_from_slice(&offset.to_be_bytes());
    key
}

/// A scenario: `producers` producers, each appending its share of the records in batches of
/// `batch`.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    producers: usize,
    batch: usize,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "1 producer x batch 100",
        producers: 1,
        batch: 100,
    },
    Scenario {
        name: "8 producers x batch 10",
        producers: 8,
        batch: 10,
    },
    Scenario {
        name: "1 producer x batch 1",
        producers: 1,
        batch: 1,
    },
];

impl Scenario {
    /// The records of `producer`: a contiguous share.
    fn share(self, producer: usize, records: usize) -> std::ops::Range<usize> {
        let per = records / self.producers;
        producer * per..(producer + 1) * per
    }

    /// Rounds `records` down to whole batches of every producer.
    fn round(self, records: usize) -> usize {
        let unit = self.producers * self.batch;
        (records / unit).max(1) * unit
    }
}

// ---- Kinfold -------------------------------------------------------------------------------

async fn kinfold_producer(
    log: EmbeddedLog,
    payload: &Payload,
    range: std::ops::Range<usize>,
    batch: usize,
) {
    let mut start = range.start;
    while start < range.end {
        let end = (start + batch).min(range.end);
        let positions = log
            .append(TOPIC, payload.outgoing(start..end))
            .await
            .expect("kinfold append");
        assert_eq!(positions.len(), end - start);
        start = end;
    }
}

/// One Kinfold run on a fresh database; the time of the appends only.
fn kinfold_run(
    runtime: &tokio::runtime::Runtime,
    payload: &'static Payload,
    scenario: Scenario,
    records: usize,
) -> Duration {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = EmbeddedDatabase::open(dir.path()).expect("the embedded database opens");
    let log = db.log();
    runtime
        .block_on(log.ensure_topic(TOPIC, PARTITIONS))
        .expect("the topic is created");
    let start = Instant::now();
    if scenario.producers == 1 {
        runtime.block_on(kinfold_producer(
            log.clone(),
            payload,
            0..records,
            scenario.batch,
        ));
    } else {
        runtime.block_on(async {
            let tasks: Vec<_> = (0..scenario.producers)
                .map(|producer| {
                    tokio::spawn(kinfold_producer(
                        log.clone(),
                        payload,
                        scenario.share(producer, records),
                        scenario.batch,
                    ))
                })
                .collect();
            for task in tasks {
                task.await.expect("a producer task");
            }
        });
    }
    let elapsed = start.elapsed();
    let written: u64 = runtime.block_on(async {
        let mut sum = 0;
        for partition in 0..PARTITIONS {
            let (_, high) = log.watermarks(TOPIC, partition).await.expect("watermarks");
            sum += high;
        }
        sum
    });
    assert_eq!(written, records as u64, "kinfold: records read back");
    elapsed
}

// ---- raw fjall -----------------------------------------------------------------------------

/// Appends `range` in batches of `batch`, each one `WriteBatch` plus `persist(SyncAll)`.
/// `partition` fixes the partition (one per concurrent producer, so producers need no shared
/// offsets); otherwise it is murmur2 of the key, as Kinfold's.
fn fjall_producer(
    db: &Database,
    keyspace: &fjall::Keyspace,
    payload: &Payload,
    range: std::ops::Range<usize>,
    batch: usize,
    partition: Option<u32>,
) {
    let mut next_offsets = [0u64; PARTITIONS as usize];
    let mut start = range.start;
    while start < range.end {
        let end = (start + batch).min(range.end);
        let mut write = db.batch();
        for index in start..end {
            let key = &payload.keys[index * KEY_LEN..(index + 1) * KEY_LEN];
            let value = payload.value(index);
            let partition = partition.unwrap_or_else(|| partition_for_key(key, PARTITIONS));
            let offset = &mut next_offsets[partition as usize];
            let mut stored = Vec::with_capacity(key.len() + value.len());
            stored.extend_from_slice(key);
            stored.extend_from_slice(value);
            write.insert(keyspace, record_key(partition, *offset), stored);
            *offset += 1;
        }
        write.commit().expect("fjall batch commit");
        db.persist(PersistMode::SyncAll).expect("fjall persist");
        start = end;
    }
}

/// One raw fjall run on a fresh database; the time of the appends only.
fn fjall_run(payload: &Payload, scenario: Scenario, records: usize) -> Duration {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = Database::builder(dir.path()).open().expect("fjall opens");
    let keyspace = db
        .keyspace("log", KeyspaceCreateOptions::default)
        .expect("a keyspace");
    db.persist(PersistMode::SyncAll).expect("fjall persist");
    let start = Instant::now();
    if scenario.producers == 1 {
        fjall_producer(&db, &keyspace, payload, 0..records, scenario.batch, None);
    } else {
        std::thread::scope(|scope| {
            for producer in 0..scenario.producers {
                let (db, keyspace) = (&db, &keyspace);
                scope.spawn(move || {
                    fjall_producer(
                        db,
                        keyspace,
                        payload,
                        scenario.share(producer, records),
                        scenario.batch,
                        Some(producer as u32),
                    );
                });
            }
        });
    }
    let elapsed = start.elapsed();
    let written = keyspace.len().expect("fjall len");
    assert_eq!(written, records, "raw fjall: records read back");
    elapsed
}

// ---- the harness ---------------------------------------------------------------------------

fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Doubles a raw fjall run until it takes `probe`, then sizes the scenario to take `target`.
fn calibrate(payload: &Payload, scenario: Scenario, probe: Duration, target: Duration) -> usize {
    let mut records = scenario.round(scenario.producers * scenario.batch * 4);
    loop {
        let elapsed = fjall_run(payload, scenario, records);
        if elapsed >= probe || records * 2 > payload.max_records() {
            let rate = records as f64 / elapsed.as_secs_f64();
            let sized = (rate * target.as_secs_f64()) as usize;
            return scenario.round(sized.min(payload.max_records()));
        }
        records = scenario.round(records * 2);
    }
}

fn main() {
    let quick = quick();
    let (probe, target) = if quick {
        (Duration::from_millis(30), Duration::from_millis(100))
    } else {
        (Duration::from_millis(250), Duration::from_millis(1000))
    };
    let (warmup, reps) = if quick { (0, 3) } else { (1, 5) };
    let started = Instant::now();
    let max_records = if quick { 200_000 } else { 2_000_000 };
    let payload: &'static Payload = Box::leak(Box::new(Payload::new(max_records)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "append bench{}: keys 36 B, values avg {:.0} B (framed canonical Avro{}, {} distinct), \
         {PARTITIONS} partitions, tempdirs in {}; setup {:.1} s",
        if quick { " (quick)" } else { "" },
        payload.average_value_len(),
        if std::env::var_os("KINFOLD_BENCH_VALUE_BYTES").is_some() {
            " cut to KINFOLD_BENCH_VALUE_BYTES"
        } else {
            ""
        },
        payload.values.len(),
        std::env::temp_dir().display(),
        started.elapsed().as_secs_f64(),
    );

    let mut summary = Vec::new();
    for scenario in SCENARIOS {
        let records = calibrate(payload, scenario, probe, target);
        let mut kinfold_runs = Vec::with_capacity(reps);
        let mut fjall_runs = Vec::with_capacity(reps);
        for round in 0..warmup + reps {
            // Alternate which goes first, so drift hits both alike.
            let (kinfold, fjall) = if round % 2 == 0 {
                let kinfold = kinfold_run(&runtime, payload, scenario, records);
                (kinfold, fjall_run(payload, scenario, records))
            } else {
                let fjall = fjall_run(payload, scenario, records);
                (kinfold_run(&runtime, payload, scenario, records), fjall)
            };
            if round >= warmup {
                kinfold_runs.push(kinfold);
                fjall_runs.push(fjall);
            }
        }
        let kinfold = records as f64 / median(&mut kinfold_runs).as_secs_f64();
        let fjall = records as f64 / median(&mut fjall_runs).as_secs_f64();
        summary.push((scenario, records, kinfold, fjall));
    }

    println!();
    println!("| scenario | records/run | kinfold rec/s | raw fjall rec/s | kinfold / raw |");
    println!("|---|---:|---:|---:|---:|");
    for (scenario, records, kinfold, fjall) in &summary {
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            scenario.name,
            grouped(*records as f64),
            grouped(*kinfold),
            grouped(*fjall),
            kinfold / fjall,
        );
    }
    println!();
    for (scenario, _, kinfold, fjall) in &summary {
        let batches = |rate: f64| rate / scenario.batch as f64;
        println!(
            "append {}  kinfold {} rec/s ({} appends/s)  raw fjall {} rec/s ({} fsyncs/s)  \
             ratio {:.2}",
            scenario.name,
            grouped(*kinfold),
            grouped(batches(*kinfold)),
            grouped(*fjall),
            grouped(batches(*fjall)),
            kinfold / fjall,
        );
    }
    println!();
    println!(
        "append bench total {:.1} s (median of {reps} runs per side)",
        started.elapsed().as_secs_f64()
    );
}

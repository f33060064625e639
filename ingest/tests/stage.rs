//! The ingest stage over a source topic of the embedded log: every record ends in the
//! canonical or the dead-letter log, positions move only past durable work, and a replay from
//! an older position (as after a crash before a commit) changes nothing.

use bytes::Bytes;
use kinfold_core::event::EventBody;
use kinfold_core::ports::GroupOptions;
use kinfold_core::ports::{EventLog, OutgoingRecord};
use kinfold_core::stage::{StageConfig, StageReport, StageStatus};
use kinfold_ingest::model::decode_json_event;
use kinfold_ingest::stage::{IngestProcessor, IngestTally, run_ingest_stage};
use kinfold_ingest::{IngestWriter, Intake};
use kinfold_schemas::codec::{Codecs, family_subject};
use kinfold_schemas::frame;
use kinfold_storage::EmbeddedDatabase;
use std::sync::Arc;
use std::time::Duration;

const SOURCE: &str = "pos.transactions";
const GROUP: &str = "kinfold-ingest";

mod common;

fn sale(serial: u32) -> EventBody {
    decode_json_event(&common::sale_json(serial)).expect("decodes")
}

struct Fixture {
    log: Arc<dyn EventLog>,
    intake: Intake,
    writer: IngestWriter,
    schema_id: u32,
}

async fn fixture(database: &EmbeddedDatabase) -> Fixture {
    let log: Arc<dyn EventLog> = Arc::new(database.log());
    let (registry, intake, writer) = common::wire(database, log.clone()).await;
    let schema_id = registry
        .latest_id(family_subject(kinfold_core::EventFamily::PosTransaction))
        .expect("id");
    log.ensure_topic(SOURCE, 4).await.expect("source topic");
    Fixture {
        log,
        intake,
        writer,
        schema_id,
    }
}

async fn produce(fixture: &Fixture, payloads: Vec<Vec<u8>>) {
    let records = payloads
        .into_iter()
        .enumerate()
        .map(|(index, payload)| OutgoingRecord {
            key: Some(Bytes::from(format!("till-{}", index % 7))),
            value: Bytes::from(payload),
            ..OutgoingRecord::default()
        })
        .collect();
    fixture.log.append(SOURCE, records).await.expect("produce");
}

async fn caught_up(log: &dyn EventLog) -> bool {
    for partition in 0..4 {
        let (_, high) = log.watermarks(SOURCE, partition).await.expect("watermarks");
        if log
            .committed(GROUP, SOURCE, partition)
            .await
            .expect("committed")
            .unwrap_or(0)
            < high
        {
            return false;
        }
    }
    true
}

/// Runs the stage until its group has committed the end of every partition, then stops it.
async fn run_until_caught_up(fixture: &Fixture) -> StageReport<IngestTally> {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut options = GroupOptions::new(GROUP, vec![SOURCE.to_owned()]);
    options.batch = 16;
    let mut config = StageConfig::new("ingest");
    config.idle = Duration::from_millis(10);
    config.commit_interval = Duration::from_millis(20);
    let status = Arc::new(StageStatus::default());
    let stage = tokio::spawn(run_ingest_stage(
        fixture.log.clone(),
        IngestProcessor::new(fixture.intake.clone(), fixture.writer.clone()),
        options,
        config,
        status.clone(),
        shutdown,
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !caught_up(fixture.log.as_ref()).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the stage did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(status.is_ready(), "ready once assigned");
    stop.send(true).expect("stop");
    stage.await.expect("stage task").expect("stage ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_records_end_in_one_log_once_and_positions_follow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = EmbeddedDatabase::open(dir.path()).expect("opens");
    let fixture = fixture(&database).await;
    let codecs = Codecs::new();
    let framed = |serial| {
        frame(
            fixture.schema_id,
            &codecs.encode_family(&sale(serial)).expect("encodes"),
        )
    };

    let mut payloads: Vec<Vec<u8>> = (0..200).map(framed).collect();
    payloads.extend((0..20).map(framed)); // producer retries: the same records again
    let mut poison = Vec::new();
    for index in 0..10u8 {
        let mut record = framed(1_000 + u32::from(index));
        match index % 3 {
            0 => record[0] = 9,                               // bad magic byte
            1 => record[1..5].copy_from_slice(&[0, 0, 9, 9]), // unknown schema id
            _ => record.truncate(record.len() - 3),           // truncated
        }
        poison.push(record);
    }
    payloads.extend(poison);
    produce(&fixture, payloads).await;

    let report = run_until_caught_up(&fixture).await;
    assert_eq!(report.records, 230);
    assert_eq!(
        report.tally,
        IngestTally {
            accepted: 200,
            duplicates: 20,
            rejected: 10
        }
    );
    assert_eq!(
        common::total_records(fixture.log.as_ref(), "events.canonical").await,
        200
    );
    assert_eq!(
        common::total_records(fixture.log.as_ref(), "events.dlq").await,
        10
    );
    let letters = fixture
        .log
        .read("events.dlq", 0, 0, 100)
        .await
        .expect("dead letters");
    for record in &letters {
        let letter = kinfold_schemas::codec::decode_framed_dead_letter(
            &record.value,
            fixture.intake.registry(),
        )
        .expect("dead letter decodes");
        assert_eq!(letter.source_topic.as_deref(), Some(SOURCE));
        assert!(
            letter.source_partition.is_some() && letter.source_offset.is_some(),
            "{letter:?}"
        );
        assert!(!letter.reason.is_empty());
    }

    // A crash before the commit: the group goes back to the start, and a replay changes nothing.
    for partition in 0..4 {
        fixture
            .log
            .commit(GROUP, SOURCE, partition, 0)
            .await
            .expect("rewind");
    }
    let replay = run_until_caught_up(&fixture).await;
    assert_eq!(replay.records, 230);
    assert_eq!(replay.tally.accepted, 0, "nothing applied twice");
    assert_eq!(
        common::total_records(fixture.log.as_ref(), "events.canonical").await,
        200
    );
    assert_eq!(
        common::total_records(fixture.log.as_ref(), "events.dlq").await,
        10,
        "no dead letter twice"
    );

    // New records after a restart: only they are read, from the committed positions.
    produce(&fixture, (200..250).map(framed).collect()).await;
    let resumed = run_until_caught_up(&fixture).await;
    assert_eq!((resumed.records, resumed.tally.accepted), (50, 50));
    assert_eq!(
        common::total_records(fixture.log.as_ref(), "events.canonical").await,
        250
    );
}

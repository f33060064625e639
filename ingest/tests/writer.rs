//! The ingest writer on the embedded backend: duplicates within and across rounds, the
//! seen-index catching up after a restart, and (with an injected fault the embedded log cannot
//! produce on demand) a round that fails after half of it was appended.

use kinfold_core::event::EventBody;
use kinfold_core::ports::{
    EventLog, LogError, LogRecord, OutgoingRecord, RecordPosition, TopicSpec,
};
use kinfold_ingest::model::decode_json_event;
use kinfold_ingest::{IngestOutcome, IngestWriter, Intake, Origin};
use kinfold_storage::EmbeddedDatabase;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{sale_json as sale, total_records, wire};

mod common;

/// The embedded log, with appends to one topic failing while `fail` is set.
#[derive(Debug)]
struct FailingLog {
    inner: Arc<dyn EventLog>,
    failing_topic: String,
    fail: AtomicBool,
}

#[async_trait::async_trait]
impl EventLog for FailingLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<TopicSpec, LogError> {
        self.inner.ensure_topic(topic, partitions).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.inner.partitions(topic).await
    }
    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError> {
        if topic == self.failing_topic && self.fail.load(Ordering::SeqCst) {
            return Err(LogError::Storage("injected failure".into()));
        }
        self.inner.append(topic, records).await
    }
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        self.inner.read(topic, partition, from, max).await
    }
    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        self.inner.watermarks(topic, partition).await
    }
    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next: u64,
    ) -> Result<(), LogError> {
        self.inner.commit(group, topic, partition, next).await
    }
    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        self.inner.committed(group, topic, partition).await
    }
}

async fn setup(database: &EmbeddedDatabase, log: Arc<dyn EventLog>) -> (Intake, IngestWriter) {
    let (_, intake, writer) = wire(database, log).await;
    (intake, writer)
}

fn statuses(outcomes: &[IngestOutcome]) -> Vec<&'static str> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            IngestOutcome::Accepted { .. } => "accepted",
            IngestOutcome::Duplicate { .. } => "duplicate",
            IngestOutcome::Rejected { .. } => "rejected",
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_recognised_within_and_across_rounds_and_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let origin = Origin::channel("test");
    {
        let database = EmbeddedDatabase::open(dir.path()).expect("opens");
        let (intake, writer) = setup(&database, Arc::new(database.log())).await;
        let round = vec![
            intake.json(&sale(1), &origin),
            intake.json(&sale(1), &origin),
            intake.json("{", &origin),
        ];
        let outcomes = writer.submit(round).await.expect("stored");
        assert_eq!(
            statuses(&outcomes),
            vec!["accepted", "duplicate", "rejected"]
        );
        let again = writer
            .submit(vec![
                intake.json(&sale(1), &origin),
                intake.json("{", &origin),
            ])
            .await
            .expect("stored");
        assert_eq!(statuses(&again), vec!["duplicate", "rejected"]);
        let IngestOutcome::Rejected { newly_recorded, .. } = &again[1] else {
            panic!("rejected")
        };
        assert!(
            !newly_recorded,
            "the same dead letter is not recorded twice"
        );
    }
    // A canonical record appended behind the index's back (as a crash between the append and
    // the index write leaves it) is recognised after a restart.
    let database = EmbeddedDatabase::open(dir.path()).expect("reopens");
    let log: Arc<dyn EventLog> = Arc::new(database.log());
    let body: EventBody = decode_json_event(&sale(2)).expect("decodes");
    log.append(
        "events.canonical",
        vec![OutgoingRecord {
            key: Some(body.event_id().to_string().into()),
            value: "x".into(),
            ..Default::default()
        }],
    )
    .await
    .expect("raw append");
    let (intake, writer) = setup(&database, log.clone()).await;
    let outcomes = writer
        .submit(vec![
            intake.json(&sale(2), &origin),
            intake.json(&sale(1), &origin),
        ])
        .await
        .expect("stored");
    assert_eq!(statuses(&outcomes), vec!["duplicate", "duplicate"]);
    assert_eq!(total_records(log.as_ref(), "events.canonical").await, 2);
    assert_eq!(total_records(log.as_ref(), "events.dlq").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_fails_half_way_is_not_appended_twice_on_retry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = EmbeddedDatabase::open(dir.path()).expect("opens");
    let failing = Arc::new(FailingLog {
        inner: Arc::new(database.log()),
        failing_topic: "events.dlq".into(),
        fail: AtomicBool::new(false),
    });
    let (intake, writer) = setup(&database, failing.clone()).await;
    let origin = Origin::channel("test");
    let round = || {
        vec![
            intake.json(&sale(7), &origin),
            intake.json("not json", &origin),
        ]
    };

    failing.fail.store(true, Ordering::SeqCst);
    assert!(
        writer.submit(round()).await.is_err(),
        "nothing acknowledged when the dead letter failed"
    );
    // The canonical half of that round is durable although it was not acknowledged.
    assert_eq!(total_records(failing.as_ref(), "events.canonical").await, 1);

    failing.fail.store(false, Ordering::SeqCst);
    let retried = writer.submit(round()).await.expect("stored");
    assert_eq!(statuses(&retried), vec!["duplicate", "rejected"]);
    assert_eq!(
        total_records(failing.as_ref(), "events.canonical").await,
        1,
        "not appended twice"
    );
    assert_eq!(total_records(failing.as_ref(), "events.dlq").await, 1);
}

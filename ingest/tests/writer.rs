//! The ingest writer on the embedded backend: duplicates within and across rounds, the
//! seen-index catching up after a restart, and (with an injected fault the embedded log cannot
//! produce on demand) a round that fails after half of it was appended.

use kinfold_core::event::EventBody;
use kinfold_core::ports::{
    EventLog, LogError, LogRecord, OutgoingRecord, PendingAppend, RecordPosition, TopicSpec,
};
use kinfold_ingest::model::decode_json_event;
use kinfold_ingest::{IngestOutcome, IngestWriter, Intake, Origin};
use kinfold_storage::EmbeddedDatabase;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{sale_json as sale, total_records, wire};

mod common;

/// The embedded log with faults injected into its appends:
/// - appends to `failing_topic` fail while `fail` is set;
/// - with `lagging`, appends complete out of order: each is made (durable, in order) when it
///   starts, but its future reports only after a delay that shrinks from one append to the
///   next, so later rounds finish before earlier ones; the appends numbered in `lost_acks`
///   report an error although their records landed (a lost acknowledgement).
#[derive(Debug, Default)]
struct FaultyLog {
    inner: Option<Arc<dyn EventLog>>,
    failing_topic: Option<String>,
    fail: AtomicBool,
    lagging: bool,
    lost_acks: Vec<usize>,
    started: AtomicUsize,
    pending: Arc<AtomicUsize>,
    most_pending: Arc<AtomicUsize>,
}

impl FaultyLog {
    fn failing(inner: Arc<dyn EventLog>, topic: &str) -> Self {
        Self {
            inner: Some(inner),
            failing_topic: Some(topic.to_owned()),
            ..Self::default()
        }
    }

    fn lagging(inner: Arc<dyn EventLog>, lost_acks: Vec<usize>) -> Self {
        Self {
            inner: Some(inner),
            lagging: true,
            lost_acks,
            ..Self::default()
        }
    }

    fn inner(&self) -> &dyn EventLog {
        self.inner.as_deref().expect("a log behind")
    }
}

#[async_trait::async_trait]
impl EventLog for FaultyLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<TopicSpec, LogError> {
        self.inner().ensure_topic(topic, partitions).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.inner().partitions(topic).await
    }
    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError> {
        self.start_append(topic, records).await?.await
    }
    async fn start_append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<PendingAppend, LogError> {
        if self.failing_topic.as_deref() == Some(topic) && self.fail.load(Ordering::SeqCst) {
            return Err(LogError::Storage("injected failure".into()));
        }
        let number = self.started.fetch_add(1, Ordering::SeqCst);
        let positions = self.inner().append(topic, records).await?;
        if !self.lagging {
            return Ok(Box::pin(std::future::ready(Ok(positions))));
        }
        let now = self.pending.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_pending.fetch_max(now, Ordering::SeqCst);
        let pending = self.pending.clone();
        let delay = Duration::from_millis(5 * (6 - (number % 6)) as u64);
        let lost = self.lost_acks.contains(&number);
        Ok(Box::pin(async move {
            tokio::time::sleep(delay).await;
            pending.fetch_sub(1, Ordering::SeqCst);
            if lost {
                Err(LogError::Storage("acknowledgement lost".into()))
            } else {
                Ok(positions)
            }
        }))
    }
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        self.inner().read(topic, partition, from, max).await
    }
    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        self.inner().watermarks(topic, partition).await
    }
    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next: u64,
    ) -> Result<(), LogError> {
        self.inner().commit(group, topic, partition, next).await
    }
    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        self.inner().committed(group, topic, partition).await
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
    let failing = Arc::new(FaultyLog::failing(Arc::new(database.log()), "events.dlq"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_in_flight_together_append_each_event_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = EmbeddedDatabase::open(dir.path()).expect("opens");
    // Each submitter's ten batches take ten rounds at least: both lost acknowledgements happen.
    let lagging = Arc::new(FaultyLog::lagging(Arc::new(database.log()), vec![2, 6]));
    let (intake, writer) = setup(&database, lagging.clone()).await;
    let intake = Arc::new(intake);
    // Sixteen submitters, ten batches each of twenty sales drawn from 300 serials, so the same
    // sale turns up in rounds that are in flight together. A batch that fails is resubmitted.
    let mut submitters = tokio::task::JoinSet::new();
    for submitter in 0..16u32 {
        let (intake, writer) = (intake.clone(), writer.clone());
        submitters.spawn(async move {
            let origin = Origin::channel("test");
            let mut state = u64::from(submitter) + 1;
            let mut results = Vec::new();
            for _ in 0..10 {
                let serials: Vec<u32> = (0..20)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        ((state >> 33) % 300) as u32
                    })
                    .collect();
                let mut attempts = 0;
                let outcomes = loop {
                    let batch = serials
                        .iter()
                        .map(|serial| intake.json(&sale(*serial), &origin))
                        .collect();
                    match writer.submit(batch).await {
                        Ok(outcomes) => break outcomes,
                        Err(_) if attempts < 5 => attempts += 1,
                        Err(error) => panic!("still failing: {error}"),
                    }
                };
                results.extend(serials.into_iter().zip(outcomes));
            }
            results
        });
    }
    let mut outcomes = Vec::new();
    while let Some(results) = submitters.join_next().await {
        outcomes.extend(results.expect("submitter"));
    }

    // The oracle: every distinct sale is in the canonical log exactly once; each is accepted
    // at most once (a sale whose first append lost its acknowledgement is only ever reported
    // as a duplicate afterwards), and every outcome of one sale names the same event.
    let mut accepted: BTreeMap<u32, usize> = BTreeMap::new();
    let mut event_ids: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for (serial, outcome) in &outcomes {
        let id = match outcome {
            IngestOutcome::Accepted { event_id, .. } => {
                *accepted.entry(*serial).or_default() += 1;
                event_id
            }
            IngestOutcome::Duplicate { event_id } => event_id,
            other => panic!("sale {serial}: {other:?}"),
        };
        event_ids.entry(*serial).or_default().insert(id.clone());
    }
    let distinct: BTreeSet<u32> = outcomes.iter().map(|(serial, _)| *serial).collect();
    assert!(accepted.values().all(|count| *count == 1), "{accepted:?}");
    assert!(event_ids.values().all(|ids| ids.len() == 1));
    let mut keys = Vec::new();
    for partition in 0..lagging
        .partitions("events.canonical")
        .await
        .expect("partitions")
    {
        for record in lagging
            .read("events.canonical", partition, 0, 10_000)
            .await
            .expect("read")
        {
            keys.push(String::from_utf8(record.key.expect("key").to_vec()).expect("utf-8"));
        }
    }
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), distinct.len(), "each sale appended once");
    assert_eq!(unique.len(), distinct.len());
    let expected: BTreeSet<&String> = event_ids.values().flatten().collect();
    assert_eq!(unique, expected);
    assert!(
        lagging.started.load(Ordering::SeqCst) > 6,
        "the failing appends happened"
    );
    assert!(
        lagging.most_pending.load(Ordering::SeqCst) > 1,
        "rounds were in flight together"
    );
}

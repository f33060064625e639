//! The ingest writer: appends canonical events and dead letters durably, once each.
//!
//! One task owns the writing, so duplicate checks and appends never race. It takes whatever
//! submissions are waiting, checks each id against the batch and the seen-index, appends the
//! new canonical events and dead letters (each log fsyncs the batch once), records their ids
//! in the index, and only then answers. The seen-index is a projection of the two logs: its
//! position per partition is stored with it, and at start-up the writer indexes whatever the
//! logs hold beyond that position, so a crash between an append and its index entry cannot
//! let a retried event in twice.
//!
//! Index layout in table `ingest_seen`: partition `[tag, first id byte]` (tag `c` canonical,
//! `d` dead letters), clustering key = the 16 id bytes, value = partition u32 BE + offset u64
//! BE; partition `pos`: clustering key = `[tag] + partition u32 BE`, value = next offset u64 BE.

use crate::config::Topics;
use crate::metrics;
use bytes::Bytes;
use kinfold_core::ports::{
    EventLog, KvError, KvMutation, KvStore, LogError, OutgoingRecord, PendingAppend, RecordPosition,
};
use kinfold_core::{CanonicalEvent, DeadLetter, EventId};
use kinfold_schemas::catalog::{CANONICAL_SUBJECT, DLQ_SUBJECT};
use kinfold_schemas::codec::Codecs;
use kinfold_schemas::{EncodeError, SchemaRegistry, frame};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

const SEEN_TABLE: &str = "ingest_seen";
const POSITIONS: &[u8] = b"pos";
const CANONICAL_TAG: u8 = b'c';
const DEAD_LETTER_TAG: u8 = b'd';
const MAX_ITEMS_PER_ROUND: usize = 16_384;
const CATCH_UP_CHUNK: usize = 2_000;

/// One input for the writer: a canonical event, or a dead letter for an input that failed.
#[derive(Debug, Clone)]
pub struct Submission {
    pub item: Result<CanonicalEvent, DeadLetter>,
    /// The source family for metrics (`pos_transaction`, ..., or `unknown`).
    pub source: &'static str,
}

/// What became of a submission. Serialised as the per-item result of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IngestOutcome {
    Accepted {
        event_id: String,
        partition: u32,
        offset: u64,
    },
    Duplicate {
        event_id: String,
    },
    Rejected {
        reason_code: String,
        reason: String,
        dead_letter_id: String,
        /// False when the same dead letter was already recorded earlier.
        newly_recorded: bool,
    },
}

/// Why the writer could not take a batch. Nothing of that batch is acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("seen-index: {0}")]
    Kv(#[from] KvError),
    #[error("schema registry: {0}")]
    Registry(#[from] kinfold_schemas::RegistryError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("corrupt seen-index entry")]
    CorruptIndex,
    #[error("the ingest writer has stopped")]
    Closed,
}

type Reply = oneshot::Sender<Result<Vec<IngestOutcome>, WriterError>>;

/// A handle to the writer task. Cloning shares it.
#[derive(Debug, Clone)]
pub struct IngestWriter {
    requests: mpsc::Sender<(Vec<Submission>, Reply)>,
}

struct WriterTask {
    log: Arc<dyn EventLog>,
    kv: Arc<dyn KvStore>,
    codecs: Codecs,
    topics: Topics,
    canonical_schema_id: u32,
    dead_letter_schema_id: u32,
}

/// The compiled-in schema `Codecs` encodes `subject` with.
fn current_schema(subject: &str) -> &'static str {
    static CATALOG: std::sync::OnceLock<kinfold_schemas::Catalog> = std::sync::OnceLock::new();
    CATALOG
        .get_or_init(kinfold_schemas::Catalog::embedded)
        .subject(subject)
        .map_or("", |entry| entry.current())
}

fn id_bytes(text: &str) -> Option<[u8; 16]> {
    text.parse::<EventId>().ok().map(|id| *id.as_bytes())
}

fn seen_partition(tag: u8, id: &[u8; 16]) -> [u8; 2] {
    [tag, id[0]]
}

fn position_key(tag: u8, partition: u32) -> Bytes {
    let mut key = vec![tag];
    key.extend_from_slice(&partition.to_be_bytes());
    Bytes::from(key)
}

fn location_value(partition: u32, offset: u64) -> Bytes {
    let mut value = Vec::with_capacity(12);
    value.extend_from_slice(&partition.to_be_bytes());
    value.extend_from_slice(&offset.to_be_bytes());
    Bytes::from(value)
}

impl IngestWriter {
    /// Creates the topics, brings the seen-index up to date with the logs, and starts the task.
    pub async fn start(
        log: Arc<dyn EventLog>,
        kv: Arc<dyn KvStore>,
        registry: &SchemaRegistry,
        topics: Topics,
    ) -> Result<Self, WriterError> {
        log.ensure_topic(&topics.canonical, topics.canonical_partitions)
            .await?;
        log.ensure_topic(&topics.dlq, topics.dlq_partitions).await?;
        let task = WriterTask {
            canonical_schema_id: registry
                .id_of(CANONICAL_SUBJECT, current_schema(CANONICAL_SUBJECT))?,
            dead_letter_schema_id: registry.id_of(DLQ_SUBJECT, current_schema(DLQ_SUBJECT))?,
            log,
            kv,
            codecs: Codecs::new(),
            topics,
        };
        task.catch_up_all().await?;
        let (requests, receiver) = mpsc::channel(1024);
        tokio::spawn(task.run(receiver));
        Ok(Self { requests })
    }

    /// Writes `submissions`; answers once each is durable (or recognised as a duplicate), in
    /// the order given.
    pub async fn submit(
        &self,
        submissions: Vec<Submission>,
    ) -> Result<Vec<IngestOutcome>, WriterError> {
        if submissions.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((submissions, reply))
            .await
            .map_err(|_| WriterError::Closed)?;
        answer.await.map_err(|_| WriterError::Closed)?
    }
}

/// Rounds whose appends may be under way at once.
const ROUNDS_IN_FLIGHT: usize = 4;

type Written = Result<(Vec<RecordPosition>, Vec<RecordPosition>), WriterError>;
type WrittenFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Written> + Send>>;

/// A round whose appends are under way.
struct Round {
    submissions: Vec<Submission>,
    sizes: Vec<usize>,
    replies: Vec<Reply>,
    plans: Vec<Plan>,
    started: Instant,
    /// The canonical and dead-letter positions, once both appends are durable.
    written: WrittenFuture,
}

/// The rounds under way, oldest first; they are finished (indexed, answered) in that order.
#[derive(Default)]
struct Pipeline {
    rounds: VecDeque<Round>,
    /// The ids the rounds under way append: a later round counts them as already there.
    in_flight_ids: HashSet<(u8, [u8; 16])>,
    /// Set when a round failed after it may have appended: the index may then miss records
    /// that are durable, so it catches up from the logs before the next round is planned.
    index_may_lag: bool,
}

impl Pipeline {
    /// Waits for the oldest round's appends (cancel-safe: the round keeps its future).
    async fn front(&mut self) -> Written {
        match self.rounds.front_mut() {
            Some(round) => (&mut round.written).await,
            None => std::future::pending().await,
        }
    }
}

fn fail(replies: Vec<Reply>, error: &WriterError) {
    let message = error.to_string();
    for reply in replies {
        let _ = reply.send(Err(WriterError::Log(LogError::Storage(message.clone()))));
    }
}

/// The fate of one submission while a round is being written.
enum Plan {
    Append { tag: u8, id: [u8; 16], index: usize },
    Duplicate,
}

impl WriterTask {
    fn topic(&self, tag: u8) -> &str {
        if tag == CANONICAL_TAG {
            &self.topics.canonical
        } else {
            &self.topics.dlq
        }
    }

    async fn run(self, mut receiver: mpsc::Receiver<(Vec<Submission>, Reply)>) {
        let mut pipeline = Pipeline::default();
        loop {
            let room = pipeline.rounds.len() < ROUNDS_IN_FLIGHT;
            tokio::select! {
                biased;
                written = pipeline.front(), if !pipeline.rounds.is_empty() => {
                    self.finish_front(&mut pipeline, written).await;
                }
                first = receiver.recv(), if room => {
                    let Some(first) = first else { break };
                    let mut requests = vec![first];
                    let mut items = requests[0].0.len();
                    while items < MAX_ITEMS_PER_ROUND {
                        match receiver.try_recv() {
                            Ok(request) => {
                                items += request.0.len();
                                requests.push(request);
                            }
                            Err(_) => break,
                        }
                    }
                    self.start_round(&mut pipeline, requests).await;
                }
            }
        }
        // The submitters are gone; still finish what is under way.
        while !pipeline.rounds.is_empty() {
            let written = pipeline.front().await;
            self.finish_front(&mut pipeline, written).await;
        }
    }

    /// Plans a round against the index and the rounds in flight, and starts its appends.
    async fn start_round(&self, pipeline: &mut Pipeline, requests: Vec<(Vec<Submission>, Reply)>) {
        let (batches, replies): (Vec<_>, Vec<_>) = requests.into_iter().unzip();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        let submissions: Vec<Submission> = batches.into_iter().flatten().collect();
        if pipeline.index_may_lag {
            // Nothing is in flight after a failure (see `fail_all`): the logs hold everything
            // that will ever land from the failed rounds.
            if let Err(error) = self.catch_up_all().await {
                fail(replies, &error);
                return;
            }
            pipeline.index_may_lag = false;
        }
        let started = Instant::now();
        let planned = match self.plan(&submissions, &pipeline.in_flight_ids).await {
            Ok(planned) => planned,
            Err(error) => {
                fail(replies, &error);
                return;
            }
        };
        let (plans, canonical_records, dead_letter_records) = planned;
        // Started one after the other, after every earlier round's: within each partition this
        // round's records land after theirs, which `finish_front` relies on.
        let canonical = self
            .start_append(&self.topics.canonical, canonical_records)
            .await;
        let dead_letters = match &canonical {
            Ok(_) => Some(
                self.start_append(&self.topics.dlq, dead_letter_records)
                    .await,
            ),
            Err(_) => None,
        };
        match (canonical, dead_letters) {
            (Ok(canonical), Some(Ok(dead_letters))) => {
                for plan in &plans {
                    if let Plan::Append { tag, id, .. } = plan {
                        pipeline.in_flight_ids.insert((*tag, *id));
                    }
                }
                let written: WrittenFuture = Box::pin(async move {
                    // Both run to completion even when one fails, so nothing of the round is
                    // still in flight once it is reported.
                    let (canonical, dead_letters) = tokio::join!(canonical, dead_letters);
                    Ok((canonical?, dead_letters?))
                });
                pipeline.rounds.push_back(Round {
                    submissions,
                    sizes,
                    replies,
                    plans,
                    started,
                    written,
                });
            }
            (canonical, dead_letters) => {
                let error = match (canonical, dead_letters) {
                    (Err(error), _) | (_, Some(Err(error))) => error,
                    _ => LogError::Storage("append could not start".into()),
                };
                // The earlier rounds stand on their own; this one may have queued records, so
                // it is reported only once everything under way has landed.
                while !pipeline.rounds.is_empty() {
                    let written = pipeline.front().await;
                    self.finish_front(pipeline, written).await;
                }
                let error = WriterError::Log(error);
                tracing::error!(%error, "ingest round failed; nothing of it is acknowledged");
                fail(replies, &error);
                pipeline.index_may_lag = true;
            }
        }
    }

    /// Completes the oldest round once its appends are durable: indexes it, answers.
    async fn finish_front(
        &self,
        pipeline: &mut Pipeline,
        written: Result<(Vec<RecordPosition>, Vec<RecordPosition>), WriterError>,
    ) {
        let Some(round) = pipeline.rounds.pop_front() else {
            return;
        };
        for plan in &round.plans {
            if let Plan::Append { tag, id, .. } = plan {
                pipeline.in_flight_ids.remove(&(*tag, *id));
            }
        }
        let result = match written {
            Ok((canonical, dead_letters)) => {
                metrics::append_latency("ingest", round.started.elapsed().as_secs_f64());
                self.index_round(&round.submissions, &round.plans, &canonical, &dead_letters)
                    .await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (reply, size) in round.replies.into_iter().zip(round.sizes) {
                    let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
                }
            }
            Err(error) => {
                tracing::error!(%error, "ingest round failed; nothing of it is acknowledged");
                fail(round.replies, &error);
                // The later rounds were planned on this one's success (its ids count as
                // appended for them); they fail too, once their appends have landed, and the
                // index then catches up from the logs before anything else is planned.
                while let Some(later) = pipeline.rounds.pop_front() {
                    let _ = later.written.await;
                    fail(later.replies, &error);
                }
                pipeline.in_flight_ids.clear();
                pipeline.index_may_lag = true;
            }
        }
    }

    async fn catch_up_all(&self) -> Result<(), WriterError> {
        self.catch_up(CANONICAL_TAG).await?;
        self.catch_up(DEAD_LETTER_TAG).await
    }

    async fn seen(&self, tag: u8, id: &[u8; 16]) -> Result<bool, WriterError> {
        Ok(self
            .kv
            .get(SEEN_TABLE, &seen_partition(tag, id), id)
            .await?
            .is_some())
    }

    /// Decides each submission's fate (append, or duplicate of one indexed, in flight or
    /// earlier in the round) and encodes what is to be appended.
    async fn plan(
        &self,
        submissions: &[Submission],
        in_flight: &HashSet<(u8, [u8; 16])>,
    ) -> Result<(Vec<Plan>, Vec<OutgoingRecord>, Vec<OutgoingRecord>), WriterError> {
        let mut plans = Vec::with_capacity(submissions.len());
        let mut in_round: HashSet<(u8, [u8; 16])> = HashSet::new();
        let mut canonical_records = Vec::new();
        let mut dead_letter_records = Vec::new();
        for submission in submissions {
            let (tag, id_text) = match &submission.item {
                Ok(event) => (CANONICAL_TAG, event.event_id.to_string()),
                Err(letter) => (DEAD_LETTER_TAG, letter.dead_letter_id.clone()),
            };
            let Some(id) = id_bytes(&id_text) else {
                return Err(WriterError::CorruptIndex);
            };
            if in_round.contains(&(tag, id))
                || in_flight.contains(&(tag, id))
                || self.seen(tag, &id).await?
            {
                plans.push(Plan::Duplicate);
                continue;
            }
            in_round.insert((tag, id));
            let record = self.encode(submission)?;
            let index = if tag == CANONICAL_TAG {
                canonical_records.push(record);
                canonical_records.len() - 1
            } else {
                dead_letter_records.push(record);
                dead_letter_records.len() - 1
            };
            plans.push(Plan::Append { tag, id, index });
        }
        Ok((plans, canonical_records, dead_letter_records))
    }

    /// Indexes a round whose appends are durable, moves the index positions past it, and
    /// returns each submission's outcome.
    async fn index_round(
        &self,
        submissions: &[Submission],
        plans: &[Plan],
        canonical_positions: &[RecordPosition],
        dead_letter_positions: &[RecordPosition],
    ) -> Result<Vec<IngestOutcome>, WriterError> {
        // Index what was appended, then move the index positions past it.
        let mut entries: BTreeMap<[u8; 2], Vec<KvMutation>> = BTreeMap::new();
        let mut ends: BTreeMap<(u8, u32), u64> = BTreeMap::new();
        for plan in plans {
            if let Plan::Append { tag, id, index } = plan {
                let position = if *tag == CANONICAL_TAG {
                    canonical_positions[*index]
                } else {
                    dead_letter_positions[*index]
                };
                entries
                    .entry(seen_partition(*tag, id))
                    .or_default()
                    .push(KvMutation::Put {
                        clustering_key: Bytes::copy_from_slice(id),
                        value: location_value(position.partition, position.offset),
                    });
                let end = ends.entry((*tag, position.partition)).or_default();
                *end = (*end).max(position.offset + 1);
            }
        }
        for (partition_key, mutations) in entries {
            self.kv
                .apply(SEEN_TABLE, &partition_key, mutations, false)
                .await?;
        }
        let position_updates: Vec<KvMutation> = ends
            .into_iter()
            .map(|((tag, partition), end)| KvMutation::Put {
                clustering_key: position_key(tag, partition),
                value: Bytes::copy_from_slice(&end.to_be_bytes()),
            })
            .collect();
        if !position_updates.is_empty() {
            self.kv
                .apply(SEEN_TABLE, POSITIONS, position_updates, false)
                .await?;
        }

        let mut outcomes: Vec<IngestOutcome> = Vec::with_capacity(plans.len());
        for (submission, plan) in submissions.iter().zip(plans) {
            let outcome = match (&submission.item, plan) {
                (Ok(event), Plan::Append { index, .. }) => {
                    metrics::accepted(submission.source);
                    let position = canonical_positions[*index];
                    IngestOutcome::Accepted {
                        event_id: event.event_id.to_string(),
                        partition: position.partition,
                        offset: position.offset,
                    }
                }
                (Ok(event), _) => {
                    metrics::duplicate(submission.source);
                    IngestOutcome::Duplicate {
                        event_id: event.event_id.to_string(),
                    }
                }
                (Err(letter), plan) => {
                    metrics::rejected(submission.source, &letter.reason_code);
                    IngestOutcome::Rejected {
                        reason_code: letter.reason_code.clone(),
                        reason: letter.reason.clone(),
                        dead_letter_id: letter.dead_letter_id.clone(),
                        newly_recorded: matches!(plan, Plan::Append { .. }),
                    }
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    fn encode(&self, submission: &Submission) -> Result<OutgoingRecord, WriterError> {
        Ok(match &submission.item {
            Ok(event) => OutgoingRecord {
                key: Some(Bytes::from(event.event_id.to_string())),
                value: Bytes::from(frame(
                    self.canonical_schema_id,
                    &self.codecs.encode_canonical(event)?,
                )),
                // No record headers: the value says everything, and tansu 0.6 (the test
                // broker) serves records with headers to librdkafka consumers at a few hundred
                // a second, which would make every stage after ingest crawl in tests.
                headers: Vec::new(),
                timestamp_millis: event.receive_time / 1000,
                partition: None,
            },
            Err(letter) => OutgoingRecord {
                key: Some(Bytes::from(letter.dead_letter_id.clone())),
                value: Bytes::from(frame(
                    self.dead_letter_schema_id,
                    &self.codecs.encode_dead_letter(letter)?,
                )),
                headers: Vec::new(),
                timestamp_millis: letter.received_at / 1000,
                partition: None,
            },
        })
    }

    async fn start_append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<PendingAppend, LogError> {
        if records.is_empty() {
            return Ok(Box::pin(std::future::ready(Ok(Vec::new()))));
        }
        self.log.start_append(topic, records).await
    }

    /// Indexes whatever the log holds beyond the index's stored positions.
    async fn catch_up(&self, tag: u8) -> Result<(), WriterError> {
        let topic = self.topic(tag).to_owned();
        let partitions = self.log.partitions(&topic).await?;
        let mut caught_up = 0usize;
        for partition in 0..partitions {
            let stored = self
                .kv
                .get(SEEN_TABLE, POSITIONS, &position_key(tag, partition))
                .await?;
            let mut next = match stored {
                Some(bytes) => u64::from_be_bytes(
                    bytes[..]
                        .try_into()
                        .map_err(|_| WriterError::CorruptIndex)?,
                ),
                None => 0,
            };
            let (_, end) = self.log.watermarks(&topic, partition).await?;
            while next < end {
                let records = self
                    .log
                    .read(&topic, partition, next, CATCH_UP_CHUNK)
                    .await?;
                let Some(last) = records.last() else {
                    break;
                };
                let last_offset = last.offset;
                let mut entries: BTreeMap<[u8; 2], Vec<KvMutation>> = BTreeMap::new();
                for record in &records {
                    let id = record
                        .key
                        .as_ref()
                        .and_then(|key| std::str::from_utf8(key).ok())
                        .and_then(id_bytes)
                        .ok_or(WriterError::CorruptIndex)?;
                    entries
                        .entry(seen_partition(tag, &id))
                        .or_default()
                        .push(KvMutation::Put {
                            clustering_key: Bytes::copy_from_slice(&id),
                            value: location_value(partition, record.offset),
                        });
                }
                for (partition_key, mutations) in entries {
                    self.kv
                        .apply(SEEN_TABLE, &partition_key, mutations, false)
                        .await?;
                }
                caught_up += records.len();
                next = last_offset + 1;
                self.kv
                    .apply(
                        SEEN_TABLE,
                        POSITIONS,
                        vec![KvMutation::Put {
                            clustering_key: position_key(tag, partition),
                            value: Bytes::copy_from_slice(&next.to_be_bytes()),
                        }],
                        false,
                    )
                    .await?;
            }
        }
        if caught_up > 0 {
            tracing::info!(
                topic,
                records = caught_up,
                "indexed records the seen-index had not recorded"
            );
        }
        Ok(())
    }
}

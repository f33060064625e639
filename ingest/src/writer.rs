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
use kinfold_core::ports::{EventLog, KvError, KvMutation, KvStore, LogError, OutgoingRecord};
use kinfold_core::{CanonicalEvent, DeadLetter, EventId};
use kinfold_schemas::catalog::{CANONICAL_SUBJECT, DLQ_SUBJECT};
use kinfold_schemas::codec::Codecs;
use kinfold_schemas::{EncodeError, SchemaRegistry, frame};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
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
        // Set when a round failed after it may have appended: the index may then miss records
        // that are durable, so it catches up from the logs before the next round is checked.
        let mut index_may_lag = false;
        while let Some(first) = receiver.recv().await {
            let mut round = vec![first];
            let mut items = round[0].0.len();
            while items < MAX_ITEMS_PER_ROUND {
                match receiver.try_recv() {
                    Ok(request) => {
                        items += request.0.len();
                        round.push(request);
                    }
                    Err(_) => break,
                }
            }
            let (batches, replies): (Vec<_>, Vec<_>) = round.into_iter().unzip();
            let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
            let flat: Vec<Submission> = batches.into_iter().flatten().collect();
            let mut result = Ok(Vec::new());
            if index_may_lag {
                result = self.catch_up_all().await.map(|()| Vec::new());
                index_may_lag = result.is_err();
            }
            if result.is_ok() {
                result = self.write_round(&flat).await;
                index_may_lag = result.is_err();
            }
            match result {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    for (reply, size) in replies.into_iter().zip(sizes) {
                        let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
                    }
                }
                Err(error) => {
                    tracing::error!(error = %error, "ingest round failed; nothing of it is acknowledged");
                    let message = error.to_string();
                    for reply in replies {
                        let _ =
                            reply.send(Err(WriterError::Log(LogError::Storage(message.clone()))));
                    }
                }
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

    async fn write_round(
        &self,
        submissions: &[Submission],
    ) -> Result<Vec<IngestOutcome>, WriterError> {
        let mut plans = Vec::with_capacity(submissions.len());
        let mut first_in_round: HashMap<(u8, [u8; 16]), usize> = HashMap::new();
        let mut canonical_records = Vec::new();
        let mut dead_letter_records = Vec::new();
        for (position, submission) in submissions.iter().enumerate() {
            let (tag, id_text) = match &submission.item {
                Ok(event) => (CANONICAL_TAG, event.event_id.to_string()),
                Err(letter) => (DEAD_LETTER_TAG, letter.dead_letter_id.clone()),
            };
            let Some(id) = id_bytes(&id_text) else {
                return Err(WriterError::CorruptIndex);
            };
            if first_in_round.contains_key(&(tag, id)) {
                plans.push(Plan::Duplicate);
                continue;
            }
            if self.seen(tag, &id).await? {
                plans.push(Plan::Duplicate);
                continue;
            }
            first_in_round.insert((tag, id), position);
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

        let started = Instant::now();
        // Both appends run to completion even when one fails, so no append is left in flight
        // behind an error; the caller then re-indexes from the logs (see `run`).
        let (canonical_positions, dead_letter_positions) = tokio::join!(
            self.append(&self.topics.canonical, canonical_records),
            self.append(&self.topics.dlq, dead_letter_records),
        );
        let (canonical_positions, dead_letter_positions) =
            (canonical_positions?, dead_letter_positions?);
        metrics::append_latency("ingest", started.elapsed().as_secs_f64());

        // Index what was appended, then move the index positions past it.
        let mut entries: BTreeMap<[u8; 2], Vec<KvMutation>> = BTreeMap::new();
        let mut ends: BTreeMap<(u8, u32), u64> = BTreeMap::new();
        for plan in &plans {
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
        for (submission, plan) in submissions.iter().zip(&plans) {
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

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<kinfold_core::ports::RecordPosition>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.log.append(topic, records).await
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

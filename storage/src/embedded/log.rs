//! The embedded event log with group commit.

use super::{keyspace, record};
use bytes::Bytes;
use fjall::{Database, Keyspace, PersistMode};
use kinfold_core::partitioner::partition_for_key;
use kinfold_core::ports::log::{check_offset, check_partition, is_valid_topic_name};
use kinfold_core::ports::{
    EventLog, LogError, LogRecord, OutgoingRecord, RecordPosition, TopicSpec,
};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use tokio::sync::oneshot;

/// The most requests folded into one batch and one fsync.
const MAX_REQUESTS_PER_BATCH: usize = 4096;

#[derive(Clone)]
struct Topic {
    partitions: u32,
    keyspace: Keyspace,
}

/// State shared by the handles and the writer thread.
#[derive(Default)]
struct Shared {
    /// Set for good when a batch could not be made durable: fjall refuses writes after a failed
    /// journal write or fsync, and what reached the disk is only known after a restart, whose
    /// recovery then keeps exactly what was durable.
    failed: std::sync::atomic::AtomicBool,
    topics: RwLock<HashMap<String, Topic>>,
    /// topic → durable end offset (next offset to be written) of each partition.
    durable_ends: RwLock<HashMap<String, Vec<u64>>>,
    /// Moves after each batch that made records readable; idle readers wait on it.
    appended: tokio::sync::watch::Sender<u64>,
}

enum Request {
    Append {
        topic: String,
        records: Vec<OutgoingRecord>,
        reply: oneshot::Sender<Result<Vec<RecordPosition>, LogError>>,
    },
    Commit {
        key: Vec<u8>,
        next_offset: u64,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
}

/// The embedded event log. Cloning shares it.
#[derive(Clone)]
pub struct EmbeddedLog {
    database: Database,
    meta: Keyspace,
    shared: Arc<Shared>,
    writer: mpsc::Sender<Request>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog").finish_non_exhaustive()
    }
}

fn storage(error: impl std::fmt::Display) -> LogError {
    LogError::Storage(error.to_string())
}

fn record_key(partition: u32, offset: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&partition.to_be_bytes());
    key[4..].copy_from_slice(&offset.to_be_bytes());
    key
}

fn group_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut key = format!("group/{group}\0{topic}\0").into_bytes();
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// The end offset of a partition as stored: one past the last record.
fn stored_end(keyspace: &Keyspace, partition: u32) -> Result<u64, LogError> {
    let range = record_key(partition, 0)..=record_key(partition, u64::MAX);
    match keyspace.range(range).next_back() {
        None => Ok(0),
        Some(guard) => {
            let key = guard.key().map_err(storage)?;
            let offset: [u8; 8] = key
                .get(4..12)
                .and_then(|slice| slice.try_into().ok())
                .ok_or_else(|| storage("malformed record key"))?;
            Ok(u64::from_be_bytes(offset) + 1)
        }
    }
}

impl EmbeddedLog {
    pub(super) fn open(database: Database) -> Result<Self, fjall::Error> {
        let meta = keyspace(&database, "log.meta")?;
        let shared = Arc::new(Shared::default());
        {
            let mut topics = shared
                .topics
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut ends = shared
                .durable_ends
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for guard in meta.prefix("topic/") {
                let (key, value) = guard.into_inner()?;
                let name = String::from_utf8_lossy(&key["topic/".len()..]).into_owned();
                let partitions =
                    value
                        .as_ref()
                        .try_into()
                        .map(u32::from_be_bytes)
                        .map_err(|_| {
                            fjall::Error::Io(std::io::Error::other(format!(
                                "corrupt partition count of topic {name}"
                            )))
                        })?;
                let topic_keyspace = keyspace(&database, &format!("log.t.{name}"))?;
                let partition_ends = (0..partitions)
                    .map(|partition| stored_end(&topic_keyspace, partition))
                    .collect::<Result<Vec<u64>, LogError>>()
                    .map_err(|error| fjall::Error::Io(std::io::Error::other(error.to_string())))?;
                ends.insert(name.clone(), partition_ends);
                topics.insert(
                    name,
                    Topic {
                        partitions,
                        keyspace: topic_keyspace,
                    },
                );
            }
        }
        let (writer, requests) = mpsc::channel();
        let writer_state = Writer {
            database: database.clone(),
            meta: meta.clone(),
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("kinfold-log-writer".into())
            .spawn(move || writer_state.run(&requests))
            .map_err(fjall::Error::Io)?;
        Ok(Self {
            database,
            meta,
            shared,
            writer,
        })
    }

    fn topic(&self, name: &str) -> Result<Topic, LogError> {
        self.shared
            .topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))
    }

    fn durable_end(&self, topic: &str, partition: u32) -> u64 {
        self.shared
            .durable_ends
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .and_then(|ends| ends.get(partition as usize))
            .copied()
            .unwrap_or(0)
    }

    fn check_healthy(&self) -> Result<(), LogError> {
        if self
            .shared
            .failed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(LogError::Storage(
                "the log could not make a batch durable earlier; restart kinfold to recover".into(),
            ));
        }
        Ok(())
    }

    /// Every topic with its partition count.
    pub fn topics(&self) -> Vec<TopicSpec> {
        let topics = self
            .shared
            .topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut specs: Vec<TopicSpec> = topics
            .iter()
            .map(|(name, topic)| TopicSpec {
                name: name.clone(),
                partitions: topic.partitions,
            })
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    }
}

#[async_trait::async_trait]
impl EventLog for EmbeddedLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<TopicSpec, LogError> {
        if !is_valid_topic_name(topic) {
            return Err(LogError::InvalidTopicName(topic.to_owned()));
        }
        if partitions == 0 {
            return Err(LogError::PartitionCountMismatch {
                topic: topic.to_owned(),
                existing: 0,
                requested: 0,
            });
        }
        let mut topics = self
            .shared
            .topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = topics.get(topic) {
            if existing.partitions != partitions {
                return Err(LogError::PartitionCountMismatch {
                    topic: topic.to_owned(),
                    existing: existing.partitions,
                    requested: partitions,
                });
            }
            return Ok(TopicSpec {
                name: topic.to_owned(),
                partitions,
            });
        }
        let topic_keyspace =
            keyspace(&self.database, &format!("log.t.{topic}")).map_err(storage)?;
        self.meta
            .insert(format!("topic/{topic}"), partitions.to_be_bytes())
            .map_err(storage)?;
        self.database
            .persist(PersistMode::SyncAll)
            .map_err(storage)?;
        topics.insert(
            topic.to_owned(),
            Topic {
                partitions,
                keyspace: topic_keyspace,
            },
        );
        Ok(TopicSpec {
            name: topic.to_owned(),
            partitions,
        })
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.topic(topic)?.partitions)
    }

    fn is_healthy(&self) -> bool {
        !self
            .shared
            .failed
            .load(std::sync::atomic::Ordering::Acquire)
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError> {
        self.check_healthy()?;
        let spec = self.topic(topic)?;
        for record in &records {
            if let Some(partition) = record.partition {
                check_partition(topic, spec.partitions, partition)?;
            }
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Request::Append {
                topic: topic.to_owned(),
                records,
                reply,
            })
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    fn appended(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.shared.appended.subscribe())
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        max_records: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        let spec = self.topic(topic)?;
        check_partition(topic, spec.partitions, partition)?;
        let end = self.durable_end(topic, partition);
        check_offset(topic, partition, from_offset, end)?;
        let last = end.min(from_offset.saturating_add(max_records as u64));
        let mut records = Vec::with_capacity((last - from_offset) as usize);
        if last == from_offset {
            return Ok(records);
        }
        for guard in spec
            .keyspace
            .range(record_key(partition, from_offset)..record_key(partition, last))
        {
            let (key, value) = guard.into_inner().map_err(storage)?;
            let offset = key
                .get(4..12)
                .and_then(|slice| slice.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| storage("malformed record key"))?;
            let value = Bytes::copy_from_slice(&value);
            let decoded =
                record::decode(partition, offset, value).ok_or_else(|| LogError::Corrupt {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    reason: "stored record does not decode".into(),
                })?;
            records.push(decoded);
        }
        Ok(records)
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        let spec = self.topic(topic)?;
        check_partition(topic, spec.partitions, partition)?;
        Ok((0, self.durable_end(topic, partition)))
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), LogError> {
        let spec = self.topic(topic)?;
        check_partition(topic, spec.partitions, partition)?;
        let end = self.durable_end(topic, partition);
        check_offset(topic, partition, next_offset, end)?;
        self.check_healthy()?;
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Request::Commit {
                key: group_key(group, topic, partition),
                next_offset,
                reply,
            })
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        let spec = self.topic(topic)?;
        check_partition(topic, spec.partitions, partition)?;
        let value = self
            .meta
            .get(group_key(group, topic, partition))
            .map_err(storage)?;
        Ok(value.and_then(|value| value.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }
}

/// The writer thread's state.
struct Writer {
    database: Database,
    meta: Keyspace,
    shared: Arc<Shared>,
}

type AppendReply = oneshot::Sender<Result<Vec<RecordPosition>, LogError>>;

impl Writer {
    fn run(self, requests: &mpsc::Receiver<Request>) {
        // Next offset to assign per topic and partition; starts at the durable end.
        let mut next_offsets: HashMap<String, Vec<u64>> = HashMap::new();
        while let Ok(first) = requests.recv() {
            let mut pending = vec![first];
            while pending.len() < MAX_REQUESTS_PER_BATCH {
                match requests.try_recv() {
                    Ok(request) => pending.push(request),
                    Err(_) => break,
                }
            }
            self.write_batch(pending, &mut next_offsets);
        }
    }

    fn durable_ends_of(&self, topic: &str, partitions: u32) -> Vec<u64> {
        let mut ends = self
            .shared
            .durable_ends
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .cloned()
            .unwrap_or_default();
        ends.resize(partitions as usize, 0);
        ends
    }

    fn write_batch(&self, pending: Vec<Request>, next_offsets: &mut HashMap<String, Vec<u64>>) {
        if self
            .shared
            .failed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            for request in pending {
                let refused = || {
                    LogError::Storage("the log failed earlier; restart kinfold to recover".into())
                };
                match request {
                    Request::Append { reply, .. } => {
                        let _ = reply.send(Err(refused()));
                    }
                    Request::Commit { reply, .. } => {
                        let _ = reply.send(Err(refused()));
                    }
                }
            }
            return;
        }
        let mut batch = self.database.batch();
        let mut append_replies: Vec<(AppendReply, Result<Vec<RecordPosition>, LogError>)> =
            Vec::new();
        let mut commit_replies = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        {
            // Held while the batch is built (no I/O), released before commit and fsync.
            let topics = self
                .shared
                .topics
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for request in pending {
                match request {
                    Request::Append {
                        topic,
                        records,
                        reply,
                    } => {
                        let Some(spec) = topics.get(&topic) else {
                            append_replies.push((reply, Err(LogError::UnknownTopic(topic))));
                            continue;
                        };
                        if !next_offsets.contains_key(&topic) {
                            next_offsets.insert(
                                topic.clone(),
                                self.durable_ends_of(&topic, spec.partitions),
                            );
                        }
                        let offsets = next_offsets
                            .get_mut(&topic)
                            .unwrap_or_else(|| unreachable!("inserted above"));
                        let mut positions = Vec::with_capacity(records.len());
                        for record in &records {
                            let partition = record.partition.unwrap_or_else(|| {
                                record
                                    .key
                                    .as_ref()
                                    .map_or(0, |key| partition_for_key(key, spec.partitions))
                            });
                            let offset = offsets[partition as usize];
                            offsets[partition as usize] += 1;
                            batch.insert(
                                &spec.keyspace,
                                record_key(partition, offset),
                                record::encode(record),
                            );
                            positions.push(RecordPosition { partition, offset });
                        }
                        if !touched.contains(&topic) {
                            touched.push(topic);
                        }
                        append_replies.push((reply, Ok(positions)));
                    }
                    Request::Commit {
                        key,
                        next_offset,
                        reply,
                    } => {
                        batch.insert(&self.meta, key, next_offset.to_be_bytes());
                        commit_replies.push(reply);
                    }
                }
            }
        }
        let outcome = batch
            .commit()
            .and_then(|()| self.database.persist(PersistMode::SyncAll));
        match outcome {
            Ok(()) => {
                let mut ends = self
                    .shared
                    .durable_ends
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let readable = !touched.is_empty();
                for topic in touched {
                    let staged = next_offsets.get(&topic).cloned().unwrap_or_default();
                    ends.insert(topic, staged);
                }
                drop(ends);
                if readable {
                    self.shared
                        .appended
                        .send_modify(|count| *count = count.wrapping_add(1));
                }
                for (reply, result) in append_replies {
                    let _ = reply.send(result);
                }
                for reply in commit_replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) => {
                // Nothing of this batch is acknowledged, and nothing after it will be: the log
                // is failed until a restart recovers what was durable.
                self.shared
                    .failed
                    .store(true, std::sync::atomic::Ordering::Release);
                tracing::error!(error = %error, "log batch failed; nothing of it is acknowledged, the log refuses writes until restarted");
                for (reply, _) in append_replies {
                    let _ = reply.send(Err(storage(&error)));
                }
                for reply in commit_replies {
                    let _ = reply.send(Err(storage(&error)));
                }
            }
        }
    }
}

//! The event log port.
//!
//! It maps one to one onto Kafka: topics have a fixed number of partitions; a record's partition
//! is chosen by Kafka's default partitioner over its key unless given; offsets are dense per
//! partition and start at 0; consumer groups store, per partition, the offset of the next record
//! to read. `append` returns only once the records are durable (fsync'd on the embedded backend,
//! acknowledged by all in-sync replicas on Kafka).

use crate::error::{ErrorKind, Fault};
use bytes::Bytes;
use std::fmt;

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A topic's name and partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingRecord {
    /// Decides the partition (murmur2, as Kafka) when `partition` is `None`; records without a
    /// key and without a partition go to partition 0.
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the epoch, as Kafka's record timestamp.
    pub timestamp_millis: i64,
    /// An explicit partition, overriding the key.
    pub partition: Option<u32>,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordPosition {
    pub partition: u32,
    pub offset: u64,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub partition: u32,
    pub offset: u64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
    pub timestamp_millis: i64,
}

impl LogRecord {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value)
    }
}

/// Errors of the log port.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    #[error("topic `{topic}` has {partitions} partitions, partition {partition} does not exist")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("topic `{topic}` exists with {existing} partitions, not {requested}")]
    PartitionCountMismatch {
        topic: String,
        existing: u32,
        requested: u32,
    },
    #[error("invalid topic name `{0}`")]
    InvalidTopicName(String),
    #[error("offset {offset} of {topic}/{partition} is beyond the end {end}")]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        end: u64,
    },
    #[error("log is shut down")]
    Closed,
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("corrupt record at {topic}/{partition}@{offset}: {reason}")]
    Corrupt {
        topic: String,
        partition: u32,
        offset: u64,
        reason: String,
    },
}

impl ErrorKind for LogError {
    fn fault(&self) -> Fault {
        match self {
            Self::UnknownTopic(_)
            | Self::UnknownPartition { .. }
            | Self::PartitionCountMismatch { .. }
            | Self::InvalidTopicName(_)
            | Self::OffsetOutOfRange { .. } => Fault::User,
            Self::Closed | Self::Storage(_) => Fault::External,
            Self::Corrupt { .. } => Fault::Internal,
        }
    }
}

/// `Ok` when `partition` exists in a topic of `partitions` partitions.
pub fn check_partition(topic: &str, partitions: u32, partition: u32) -> Result<(), LogError> {
    if partition >= partitions {
        return Err(LogError::UnknownPartition {
            topic: topic.to_owned(),
            partition,
            partitions,
        });
    }
    Ok(())
}

/// `Ok` when `offset` is at or before `end`, the partition's next offset to be written.
pub fn check_offset(topic: &str, partition: u32, offset: u64, end: u64) -> Result<(), LogError> {
    if offset > end {
        return Err(LogError::OffsetOutOfRange {
            topic: topic.to_owned(),
            partition,
            offset,
            end,
        });
    }
    Ok(())
}

/// Whether `name` is a legal topic name (Kafka's rule: 1 to 249 of `[a-zA-Z0-9._-]`).
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// An append under way: resolves to the records' positions once they are durable.
pub type PendingAppend = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<RecordPosition>, LogError>> + Send>,
>;

/// The event log: partitioned, append-only topics with consumer-group positions.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + fmt::Debug {
    /// Creates `topic` with `partitions` partitions, or checks that it exists with that count.
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<TopicSpec, LogError>;

    /// The topic's partition count.
    async fn partitions(&self, topic: &str) -> Result<u32, LogError>;

    /// False once the log can no longer take appends (a failed fsync on the embedded backend);
    /// `/readyz` reports it so that an orchestrator restarts the process.
    fn is_healthy(&self) -> bool {
        true
    }

    /// A counter that moves each time records become readable on this log, so that a reader
    /// that has seen everything can wait for it instead of polling; `None` when the backend
    /// cannot tell (readers then poll).
    fn appended(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Appends `records` to `topic`; returns once they are durable, with their positions in
    /// the order given. Records of one call that land in the same partition keep their order.
    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError>;

    /// Starts appending `records` to `topic`: returns once they are queued behind every append
    /// started before on this log, with a future that resolves as `append` would. Appends
    /// started one after the other land in that order in each partition, so a writer can keep
    /// several in flight and still know that an earlier one's records precede a later one's.
    /// Dropping the future does not withdraw the records. By default the whole append is made
    /// before this returns.
    async fn start_append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<PendingAppend, LogError> {
        let positions = self.append(topic, records).await?;
        Ok(Box::pin(std::future::ready(Ok(positions))))
    }

    /// Up to `max_records` records of `topic`/`partition` from `from_offset` on, in offset order.
    /// An empty answer means nothing is there yet.
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        max_records: usize,
    ) -> Result<Vec<LogRecord>, LogError>;

    /// The low watermark (first readable offset) and high watermark (next offset to be written).
    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError>;

    /// Stores `next_offset` as the position of `group` in `topic`/`partition`.
    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), LogError>;

    /// Joins a consumer group through the backend's coordinator; `None` when the backend has
    /// none (the caller is then the group's only member, see [`super::group::join_group`]).
    async fn join_group(
        &self,
        options: &super::group::GroupOptions,
    ) -> Result<Option<Box<dyn super::group::GroupMember>>, LogError> {
        let _ = options;
        Ok(None)
    }

    /// The stored position of `group` in `topic`/`partition`, if any.
    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError>;
}

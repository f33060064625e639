//! Ports: what the stages need from storage, shaped so that both the embedded backend (fjall)
//! and the distributed one (Kafka for the log, ScyllaDB for tables) can implement them.

pub mod group;
pub mod kv;
pub mod log;

pub use group::{
    GroupEvent, GroupMember, GroupOptions, RevokeDone, SoleMember, StoredPositions, join_group,
};
pub use kv::{KvError, KvMutation, KvRow, KvStore};
pub use log::{
    EventLog, LogError, LogRecord, OutgoingRecord, PendingAppend, RecordPosition, TopicPartition,
    TopicSpec,
};

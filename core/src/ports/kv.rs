//! The key-value port.
//!
//! Shaped after a ScyllaDB table: a row is addressed by a partition key and a clustering key;
//! rows of one partition are read in clustering-key order; a batch of mutations within one
//! partition is atomic. Tables are named up front and hold opaque bytes.

use crate::error::{ErrorKind, Fault};
use bytes::Bytes;
use std::fmt;

/// A row of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRow {
    pub clustering_key: Bytes,
    pub value: Bytes,
}

/// A change to a row of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvMutation {
    Put { clustering_key: Bytes, value: Bytes },
    Delete { clustering_key: Bytes },
}

/// Errors of the key-value port.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("invalid table name `{0}`")]
    InvalidTableName(String),
    #[error("storage failure: {0}")]
    Storage(String),
}

impl ErrorKind for KvError {
    fn fault(&self) -> Fault {
        match self {
            Self::InvalidTableName(_) => Fault::Internal,
            Self::Storage(_) => Fault::External,
        }
    }
}

/// Tables of rows addressed by (partition key, clustering key).
#[async_trait::async_trait]
pub trait KvStore: Send + Sync + fmt::Debug {
    /// One row.
    async fn get(
        &self,
        table: &str,
        partition_key: &[u8],
        clustering_key: &[u8],
    ) -> Result<Option<Bytes>, KvError>;

    /// Rows of one partition with `from <= clustering key`, in clustering-key order, at most
    /// `limit` of them.
    async fn scan_partition(
        &self,
        table: &str,
        partition_key: &[u8],
        from_clustering_key: &[u8],
        limit: usize,
    ) -> Result<Vec<KvRow>, KvError>;

    /// Applies `mutations` to one partition atomically; durable when `durable` is set, and then
    /// so is every mutation applied to this store before it (so a batch of partitions needs
    /// only its last apply durable).
    async fn apply(
        &self,
        table: &str,
        partition_key: &[u8],
        mutations: Vec<KvMutation>,
        durable: bool,
    ) -> Result<(), KvError>;

    /// Every partition key of `table` (for admin listings and rebuilds, not hot paths).
    async fn partition_keys(&self, table: &str) -> Result<Vec<Bytes>, KvError>;
}

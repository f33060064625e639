//! Key-value tables on fjall: one keyspace per table, rows keyed by
//! `<partition key length u16 BE><partition key><clustering key>`.

use super::keyspace;
use bytes::Bytes;
use fjall::{Database, Keyspace, PersistMode};
use kinfold_core::ports::{KvError, KvMutation, KvRow, KvStore};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The embedded key-value store.
#[derive(Clone)]
pub struct EmbeddedKv {
    database: Database,
    tables: Arc<RwLock<HashMap<String, Keyspace>>>,
}

impl std::fmt::Debug for EmbeddedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKv").finish_non_exhaustive()
    }
}

fn storage(error: impl std::fmt::Display) -> KvError {
    KvError::Storage(error.to_string())
}

fn check_partition_key(partition_key: &[u8]) -> Result<(), KvError> {
    if partition_key.len() > usize::from(u16::MAX) {
        return Err(KvError::Storage(
            "partition key longer than 65535 bytes".into(),
        ));
    }
    Ok(())
}

fn row_prefix(partition_key: &[u8]) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(2 + partition_key.len());
    prefix.extend_from_slice(&(partition_key.len() as u16).to_be_bytes());
    prefix.extend_from_slice(partition_key);
    prefix
}

impl EmbeddedKv {
    pub(super) fn new(database: Database) -> Self {
        Self {
            database,
            tables: Arc::default(),
        }
    }

    fn table(&self, table: &str) -> Result<Keyspace, KvError> {
        if let Some(keyspace) = self
            .tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(table)
        {
            return Ok(keyspace.clone());
        }
        if table.is_empty()
            || table.len() > 200
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(KvError::InvalidTableName(table.to_owned()));
        }
        let keyspace = keyspace(&self.database, &format!("kv.{table}")).map_err(storage)?;
        self.tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(table.to_owned(), keyspace.clone());
        Ok(keyspace)
    }

    fn apply_blocking(
        &self,
        table: &str,
        partition_key: &[u8],
        mutations: Vec<KvMutation>,
        durable: bool,
    ) -> Result<(), KvError> {
        if partition_key.len() > usize::from(u16::MAX) {
            return Err(KvError::Storage(
                "partition key longer than 65535 bytes".into(),
            ));
        }
        let keyspace = self.table(table)?;
        let prefix = row_prefix(partition_key);
        let mut batch = self.database.batch();
        for mutation in mutations {
            match mutation {
                KvMutation::Put {
                    clustering_key,
                    value,
                } => {
                    let mut key = prefix.clone();
                    key.extend_from_slice(&clustering_key);
                    batch.insert(&keyspace, key, value.to_vec());
                }
                KvMutation::Delete { clustering_key } => {
                    let mut key = prefix.clone();
                    key.extend_from_slice(&clustering_key);
                    batch.remove(&keyspace, key);
                }
            }
        }
        batch.commit().map_err(storage)?;
        if durable {
            self.database
                .persist(PersistMode::SyncAll)
                .map_err(storage)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl KvStore for EmbeddedKv {
    async fn get(
        &self,
        table: &str,
        partition_key: &[u8],
        clustering_key: &[u8],
    ) -> Result<Option<Bytes>, KvError> {
        check_partition_key(partition_key)?;
        let keyspace = self.table(table)?;
        let mut key = row_prefix(partition_key);
        key.extend_from_slice(clustering_key);
        let value = keyspace.get(key).map_err(storage)?;
        Ok(value.map(|value| Bytes::copy_from_slice(&value)))
    }

    async fn scan_partition(
        &self,
        table: &str,
        partition_key: &[u8],
        from_clustering_key: &[u8],
        limit: usize,
    ) -> Result<Vec<KvRow>, KvError> {
        check_partition_key(partition_key)?;
        let keyspace = self.table(table)?;
        let prefix = row_prefix(partition_key);
        let mut start = prefix.clone();
        start.extend_from_slice(from_clustering_key);
        let mut rows = Vec::new();
        for guard in keyspace.range(start..) {
            if rows.len() >= limit {
                break;
            }
            let (key, value) = guard.into_inner().map_err(storage)?;
            let Some(clustering_key) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            rows.push(KvRow {
                clustering_key: Bytes::copy_from_slice(clustering_key),
                value: Bytes::copy_from_slice(&value),
            });
        }
        Ok(rows)
    }

    async fn apply(
        &self,
        table: &str,
        partition_key: &[u8],
        mutations: Vec<KvMutation>,
        durable: bool,
    ) -> Result<(), KvError> {
        if !durable {
            return self.apply_blocking(table, partition_key, mutations, false);
        }
        let this = self.clone();
        let table = table.to_owned();
        let partition_key = partition_key.to_vec();
        tokio::task::spawn_blocking(move || {
            this.apply_blocking(&table, &partition_key, mutations, true)
        })
        .await
        .map_err(storage)?
    }

    async fn partition_keys(&self, table: &str) -> Result<Vec<Bytes>, KvError> {
        let keyspace = self.table(table)?;
        let mut keys: Vec<Bytes> = Vec::new();
        for guard in keyspace.iter() {
            let key = guard.key().map_err(storage)?;
            if key.len() < 2 {
                continue;
            }
            let length = usize::from(u16::from_be_bytes([key[0], key[1]]));
            let Some(partition_key) = key.get(2..2 + length) else {
                continue;
            };
            if keys.last().map(|last| last.as_ref()) != Some(partition_key) {
                keys.push(Bytes::copy_from_slice(partition_key));
            }
        }
        Ok(keys)
    }
}

//! The embedded backend: one fjall database in a data directory.
//!
//! On-disk layout (keyspaces):
//! - `log.meta`: `topic/<name>` → partition count (u32 BE);
//!   `group/<group>\0<topic>\0<partition u32 BE>` → next offset (u64 BE).
//! - `log.t.<topic>`: `<partition u32 BE><offset u64 BE>` → an encoded record (see `record`).
//! - `kv.<table>`: `<partition key length u16 BE><partition key><clustering key>` → value.
//!
//! Durability: every append and every group commit goes through one writer thread that
//! collects whatever requests are waiting, writes them as one atomic fjall batch, fsyncs the
//! journal once (group commit), and only then answers the callers. Readers never see records
//! beyond the durable end of a partition, so nothing a consumer acts on can vanish in a crash.

mod kv;
mod log;
mod record;

pub use kv::EmbeddedKv;
pub use log::EmbeddedLog;

use fjall::{Database, KeyspaceCreateOptions};
use std::path::Path;

/// An open embedded database. Cloning shares it.
#[derive(Clone)]
pub struct EmbeddedDatabase {
    database: Database,
    log: EmbeddedLog,
}

impl std::fmt::Debug for EmbeddedDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDatabase").finish_non_exhaustive()
    }
}

impl EmbeddedDatabase {
    /// Opens or creates the database in `dir`, recovering whatever was durable.
    pub fn open(dir: &Path) -> Result<Self, fjall::Error> {
        std::fs::create_dir_all(dir).map_err(fjall::Error::Io)?;
        let database = Database::builder(dir).open()?;
        let log = EmbeddedLog::open(database.clone())?;
        Ok(Self { database, log })
    }

    /// The event log.
    pub fn log(&self) -> EmbeddedLog {
        self.log.clone()
    }

    /// The key-value tables.
    pub fn kv(&self) -> EmbeddedKv {
        EmbeddedKv::new(self.database.clone())
    }

    /// The underlying fjall database, for benchmarks that compare against raw fjall.
    pub fn fjall(&self) -> &Database {
        &self.database
    }
}

fn keyspace(database: &Database, name: &str) -> Result<fjall::Keyspace, fjall::Error> {
    database.keyspace(name, KeyspaceCreateOptions::default)
}

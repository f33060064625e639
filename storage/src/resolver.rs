//! Backends chosen by URL.

use crate::embedded::EmbeddedDatabase;
use kinfold_core::ports::{EventLog, KvStore};
use std::path::PathBuf;
use std::sync::Arc;

/// The ports a process runs on.
#[derive(Debug, Clone)]
pub struct Backends {
    pub log: Arc<dyn EventLog>,
    pub kv: Arc<dyn KvStore>,
}

/// Why a storage URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "unsupported storage url `{0}`: expected embedded://DIR, kafka://HOST:PORT or scylla://HOST:PORT/KEYSPACE"
    )]
    UnsupportedScheme(String),
    #[error(
        "the `{feature}` backend is not compiled into this binary (rebuild with `--features {feature}`)"
    )]
    NotCompiledIn { feature: &'static str },
    #[error("cannot open the embedded database in {dir}: {reason}")]
    Embedded { dir: String, reason: String },
}

/// Opens the backends that `url` names. `embedded://DIR` opens (or creates) the database in
/// `DIR`; a relative `DIR` is relative to the working directory.
pub fn resolve(url: &str) -> Result<Backends, ResolveError> {
    if let Some(dir) = url.strip_prefix("embedded://") {
        let database = EmbeddedDatabase::open(&PathBuf::from(dir)).map_err(|error| {
            ResolveError::Embedded {
                dir: dir.to_owned(),
                reason: error.to_string(),
            }
        })?;
        return Ok(Backends {
            log: Arc::new(database.log()),
            kv: Arc::new(database.kv()),
        });
    }
    if url.starts_with("kafka://") {
        return Err(ResolveError::NotCompiledIn { feature: "kafka" });
    }
    if url.starts_with("scylla://") {
        return Err(ResolveError::NotCompiledIn { feature: "scylla" });
    }
    Err(ResolveError::UnsupportedScheme(url.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_out_backends_say_so() {
        let error = resolve("kafka://127.0.0.1:9092").expect_err("kafka is not compiled in");
        assert!(error.to_string().contains("--features kafka"), "{error}");
        assert!(matches!(
            resolve("ftp://x"),
            Err(ResolveError::UnsupportedScheme(_))
        ));
    }
}

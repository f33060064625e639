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
    #[error("`{0}` is an event log, not a key-value store: give it as the log url (--log)")]
    LogOnly(String),
    #[error("cannot open the embedded database in {dir}: {reason}")]
    Embedded { dir: String, reason: String },
    #[error("cannot connect to kafka at {bootstrap}: {reason}")]
    Kafka { bootstrap: String, reason: String },
}

/// Opens the backends that `url` names. `embedded://DIR` opens (or creates) the database in
/// `DIR`; a relative `DIR` is relative to the working directory.
pub fn resolve(url: &str) -> Result<Backends, ResolveError> {
    resolve_with_log(url, None)
}

/// Like [`resolve`], with the event log on `log_url` instead of in the same store, for example
/// the embedded tables with the log on Kafka.
pub fn resolve_with_log(url: &str, log_url: Option<&str>) -> Result<Backends, ResolveError> {
    if let Some(dir) = url.strip_prefix("embedded://") {
        let database = EmbeddedDatabase::open(&PathBuf::from(dir)).map_err(|error| {
            ResolveError::Embedded {
                dir: dir.to_owned(),
                reason: error.to_string(),
            }
        })?;
        let log: Arc<dyn EventLog> = match log_url {
            None => Arc::new(database.log()),
            Some(log_url) => resolve_log(log_url, &database)?,
        };
        return Ok(Backends {
            log,
            kv: Arc::new(database.kv()),
        });
    }
    if url.starts_with("kafka://") {
        return Err(ResolveError::LogOnly(url.to_owned()));
    }
    if url.starts_with("scylla://") {
        return Err(ResolveError::NotCompiledIn { feature: "scylla" });
    }
    Err(ResolveError::UnsupportedScheme(url.to_owned()))
}

fn resolve_log(url: &str, database: &EmbeddedDatabase) -> Result<Arc<dyn EventLog>, ResolveError> {
    if url.starts_with("embedded://") {
        return Ok(Arc::new(database.log()));
    }
    if let Some(bootstrap) = url.strip_prefix("kafka://") {
        #[cfg(feature = "kafka")]
        {
            let log = crate::kafka::KafkaLog::connect(bootstrap).map_err(|error| {
                ResolveError::Kafka {
                    bootstrap: bootstrap.to_owned(),
                    reason: error.to_string(),
                }
            })?;
            return Ok(Arc::new(log));
        }
        #[cfg(not(feature = "kafka"))]
        {
            let _ = bootstrap;
            return Err(ResolveError::NotCompiledIn { feature: "kafka" });
        }
    }
    Err(ResolveError::UnsupportedScheme(url.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_say_what_they_cannot_be() {
        assert!(matches!(
            resolve("kafka://127.0.0.1:9092"),
            Err(ResolveError::LogOnly(_))
        ));
        assert!(matches!(
            resolve("ftp://x"),
            Err(ResolveError::UnsupportedScheme(_))
        ));
        let error = resolve("scylla://127.0.0.1:9042/k").expect_err("scylla is not compiled in");
        assert!(error.to_string().contains("--features scylla"), "{error}");
    }

    #[cfg(not(feature = "kafka"))]
    #[test]
    fn a_compiled_out_kafka_log_says_so() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("embedded://{}", dir.path().display());
        let error =
            resolve_with_log(&url, Some("kafka://127.0.0.1:9092")).expect_err("not compiled in");
        assert!(error.to_string().contains("--features kafka"), "{error}");
    }
}

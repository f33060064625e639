//! Wiring: storage backends, the schema registry, the ingest intake and writer.

use crate::config::Config;
use anyhow::Context;
use kinfold_core::time::SystemClock;
use kinfold_ingest::{IngestWriter, Intake};
use kinfold_schemas::{Catalog, SchemaRegistry};
use kinfold_storage::{Backends, resolve_with_log};
use std::sync::Arc;

/// Everything a running Kinfold needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub backends: Backends,
    pub registry: Arc<SchemaRegistry>,
    pub intake: Intake,
    pub writer: IngestWriter,
}

impl App {
    /// Opens storage, registers Kinfold's own schemas, and starts the ingest writer.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let backends = resolve_with_log(&config.storage.url, config.storage.log.as_deref())
            .with_context(|| {
                format!(
                    "cannot open storage {} (is another kinfold process using it?)",
                    config.storage.url
                )
            })?;
        let registry = Arc::new(if config.registry.url.is_empty() {
            SchemaRegistry::open(backends.kv.clone())
                .await
                .context("cannot load the schema registry")?
        } else {
            SchemaRegistry::open_remote(&config.registry.url)
                .with_context(|| format!("schema registry at {}", config.registry.url))?
        });
        registry
            .register_catalog(&Catalog::embedded())
            .await
            .context("cannot register kinfold's own schemas")?;
        let writer = IngestWriter::start(
            backends.log.clone(),
            backends.kv.clone(),
            &registry,
            config.topics.clone(),
        )
        .await
        .context("cannot start the ingest writer")?;
        let intake = Intake::new(
            registry.clone(),
            config.ingest.clone(),
            Arc::new(SystemClock),
        );
        Ok(Self {
            config: Arc::new(config),
            backends,
            registry,
            intake,
            writer,
        })
    }
}

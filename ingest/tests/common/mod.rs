//! What the ingest integration tests share: a sale, a wired intake and writer on the embedded
//! backend, and record counts.

use kinfold_core::ports::EventLog;
use kinfold_core::time::{FixedClock, TimestampMicros};
use kinfold_ingest::{IngestLimits, IngestWriter, Intake, Topics};
use kinfold_schemas::{Catalog, SchemaRegistry};
use kinfold_storage::EmbeddedDatabase;
use std::sync::Arc;

/// 2026-11-20T12:00:00Z, the tests' receive time.
pub const NOW: TimestampMicros = 1_795_176_000_000_000;

/// A valid POS sale as JSON, told apart by `serial`.
pub fn sale_json(serial: u32) -> String {
    serde_json::json!({
        "type": "pos.transaction", "kind": "SALE", "brand": "b", "store_id": "S1", "till_id": "T1",
        "serial": serial.to_string(), "business_day": "2026-11-20", "occurred_at_local": "2026-11-20T09:00:00",
        "currency": "CNY", "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 100}], "total_minor": 100
    })
    .to_string()
}

/// The registry (with Kinfold's catalog), an intake at [`NOW`] and a writer on `log`.
pub async fn wire(
    database: &EmbeddedDatabase,
    log: Arc<dyn EventLog>,
) -> (Arc<SchemaRegistry>, Intake, IngestWriter) {
    let kv = Arc::new(database.kv());
    let registry = Arc::new(SchemaRegistry::open(kv.clone()).await.expect("registry"));
    registry
        .register_catalog(&Catalog::embedded())
        .await
        .expect("catalog");
    let writer = IngestWriter::start(log, kv, &registry, Topics::default())
        .await
        .expect("writer");
    let intake = Intake::new(
        registry.clone(),
        IngestLimits::default(),
        Arc::new(FixedClock(NOW)),
    );
    (registry, intake, writer)
}

pub use kinfold_tests::total_records;

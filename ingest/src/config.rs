//! Ingest settings.

use serde::{Deserialize, Serialize};

/// Limits that make an input invalid when exceeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestLimits {
    /// Longest id-like field (store, serial, sku, order id...), bytes.
    pub max_id_len: usize,
    /// Longest free-text field (description, title, reason, page), bytes.
    pub max_text_len: usize,
    /// Most lines or items in one transaction or order.
    pub max_lines: usize,
    /// Largest amount in minor units (10^10 fen is 100 million yuan).
    pub max_amount_minor: i64,
    /// Largest quantity of one line.
    pub max_quantity: i64,
    /// How far after the receive time an event time may be, seconds.
    pub max_future_skew_secs: i64,
    /// Earliest event time accepted, microseconds since the epoch (default 2000-01-01).
    pub min_event_time_micros: i64,
    /// Most events in one HTTP request.
    pub max_batch_items: usize,
    /// Largest HTTP request body, bytes.
    pub max_body_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_id_len: 128,
            max_text_len: 1024,
            max_lines: 1000,
            max_amount_minor: 10_000_000_000,
            max_quantity: 100_000,
            max_future_skew_secs: 86_400,
            min_event_time_micros: 946_684_800_000_000,
            max_batch_items: 1000,
            max_body_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The topics ingest writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    pub canonical: String,
    pub canonical_partitions: u32,
    pub dlq: String,
    pub dlq_partitions: u32,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            canonical: "events.canonical".to_owned(),
            canonical_partitions: 8,
            dlq: "events.dlq".to_owned(),
            dlq_partitions: 1,
        }
    }
}

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

/// A source topic as POS and e-commerce systems write it: Avro in the Confluent wire format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTopic {
    pub name: String,
    /// Created with this many partitions when missing; an existing topic must have as many.
    pub partitions: u32,
    /// What producers key records by, which keeps one till's or one buyer's records in order.
    /// Kinfold does not depend on it; it documents the contract with the producers.
    pub key: String,
}

/// What the ingest stage consumes, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sources {
    /// The consumer group of the ingest stage.
    pub group: String,
    /// Most records handed over from one partition at a time.
    pub batch: usize,
    /// Most batches in flight at once.
    pub max_in_flight: usize,
    /// How long a revoked partition or a shutdown waits for in-flight batches, milliseconds.
    pub drain_timeout_ms: u64,
    /// How often positions are committed, milliseconds.
    pub commit_interval_ms: u64,
    pub topics: Vec<SourceTopic>,
}

impl Default for Sources {
    fn default() -> Self {
        let topic = |name: &str, key: &str| SourceTopic {
            name: name.to_owned(),
            partitions: 8,
            key: key.to_owned(),
        };
        Self {
            group: "kinfold-ingest".to_owned(),
            batch: 500,
            max_in_flight: 8,
            drain_timeout_ms: 10_000,
            commit_interval_ms: 500,
            topics: vec![
                topic("pos.transactions", "store_id/till_id"),
                topic("ecom.orders", "shop_id/order_id"),
                topic("ecom.refunds", "shop_id/order_id"),
                topic("wechat.events", "openid"),
                topic("membership.events", "member_card"),
            ],
        }
    }
}

//! The ingest stage: source bytes in, canonical events or dead letters out.
//!
//! - `model/` is pure: decoders per format (JSON, Avro in the Confluent wire format), the
//!   validation rules with a reason per failure, identifier clean-up (junk values are dropped
//!   from the event with a counted warning, the event is kept), and the mapping to the
//!   canonical envelope with its deterministic event id.
//! - `writer` appends canonical events to `events.canonical` and dead letters to `events.dlq`,
//!   recognises duplicates by event id, and acknowledges an input only once it is durable in
//!   one of the two.
//!
//! Invariant: every input ends as exactly one of accepted, duplicate or rejected, and only
//! after the log that holds it has made it durable.

pub mod config;
pub mod error;
pub mod intake;
pub mod metrics;
pub mod model;
pub mod online_retail;
pub mod stage;
pub mod writer;

pub use config::{IngestLimits, SourceTopic, Sources, Topics};
pub use error::{RejectCode, Rejection};
pub use intake::{Intake, Origin};
pub use model::{Canonicalised, DroppedIdentifier, canonicalise};
pub use writer::{IngestOutcome, IngestWriter, Submission, WriterError};

//! Avro schemas of every topic, their codecs, the Confluent wire format, compatibility checks
//! and the schema registry that Kinfold serves.
//!
//! Inputs: `.avsc` files under `schemas/avro/<subject>/vN.avsc`, frozen once released; golden
//! samples under `schemas/golden/`. Outputs: encoded and decoded canonical events, dead letters
//! and source records.
//!
//! Invariants:
//! - a released schema version is never edited; a change is a new version, and every version
//!   must stay readable by the current one (BACKWARD_TRANSITIVE), which `check_catalog` proves;
//! - decoding never panics on any input: every failure is a [`DecodeError`] with a reason.

pub mod catalog;
pub mod codec;
pub mod compat;
pub mod compose;
pub mod registry;
mod remote;
pub mod wire;

pub use catalog::{Catalog, SubjectSchemas};
pub use codec::{DecodeError, EncodeError, SourceRecord};
pub use compat::CompatibilityLevel;
pub use registry::{RegisteredSchema, RegistryError, SchemaRegistry};
pub use wire::{FrameError, frame, parse_frame};

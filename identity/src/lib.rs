//! The identity stage: resolves every event's identifiers to one unified customer id, with
//! merges that can be undone.
//!
//! - `model`: the rules (a TOML file: priority of kinds, per-customer limits, kinds that may
//!   merge, blocked values) and the identity graph, pure and deterministic, so that the graph is
//!   a projection of the log that replay rebuilds exactly.
//!
//! Still to come (issue 4): splits, erasure and review decisions; the stage over
//! `events.canonical` writing `events.resolved` and `identity.changes`; the state in the
//! key-value store with its positions; rule previews; the gRPC service.

pub mod model;

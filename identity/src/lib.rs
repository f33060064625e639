//! The identity stage: resolves every event's identifiers to one unified customer id, with
//! merges that can be undone.
//!
//! - `model`: the rules (a TOML file: priority of kinds, per-customer limits, kinds that may
//!   merge, blocked values), the identity graph (links, merges, refusals held for review, merges
//!   by hand, splits that re-resolve history, erasure) and rule previews; pure and
//!   deterministic, so that the graph is a projection of the log that replay rebuilds exactly.
//! - `records`: the stage's records on the log (`identity.inputs`, `events.resolved`,
//!   `identity.changes`).
//!
//! Still to come (issue 4): the stage itself (forwarding canonical events to
//! `identity.inputs`, resolving them in order), the graph's snapshots in the key-value store
//! with their positions, and the gRPC service. See `docs/identity.md`.

pub mod model;
pub mod records;
pub mod stage;

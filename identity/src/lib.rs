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
//! - `stage`: the stage on the shared stage loop: forwarding canonical events to
//!   `identity.inputs`, resolving them there in one order, the graph's state in the key-value
//!   store with its position, and each customer's changes.
//! - `service`: `kinfold.v1.IdentityService` over gRPC: resolve, merges, splits and erasure by
//!   hand, each customer's changes, the review queue. See `docs/identity.md`.

pub mod model;
pub mod records;
pub mod service;
pub mod stage;

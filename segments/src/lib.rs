//! The segments stage: live rule-based membership, timers and triggers, and the gRPC query
//! service.
//!
//! - [`rule`]: the rule language; [`eval`]: a rule evaluated for one customer at an instant;
//! - [`membership`]: live membership and timers; [`triggers`]: once-per-period firings;
//! - [`stage`]: the stage over `profiles.changed`, with its state in the key-value store.

pub mod eval;
pub mod membership;
pub mod rule;
pub mod service;
pub mod stage;
pub mod triggers;

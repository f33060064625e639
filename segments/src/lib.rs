//! The segments stage: live rule-based membership, timers and triggers, and the gRPC query
//! service. Built so far: the rule language ([`rule`]).

pub mod eval;
pub mod membership;
pub mod rule;
pub mod triggers;

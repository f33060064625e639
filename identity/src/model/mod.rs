//! The pure part of identity: rules and graph, no I/O.

pub mod graph;
pub mod preview;
pub mod rules;

pub use graph::{
    Cause, Change, Customer, CustomerId, GraphError, IdentityGraph, Resolution, ReviewItem,
};
pub use preview::{Regrouping, RulePreview, preview};
pub use rules::{Blocked, DEFAULT_RULES, Limit, Rules, RulesError, RulesFile};

//! The profile stage: each customer's journal of resolved events, folded in event time into
//! the 360° profile that internal services read.
//!
//! - `journal`: a customer's events in event time, each once; whether a new one folds on top.
//! - `fold`: the stored projection ([`fold::ProfileState`]) and the profile a reader gets
//!   ([`fold::Profile`]), the same whatever order and however often the events arrived.
//! - `rules`: RFM thresholds and the lifetime value's horizon.
//! - `stage`: the stage over `events.resolved`, journals and profiles in the key-value store,
//!   merges and splits followed from the markers identity puts there.
//! - `service`: `kinfold.v1.ProfileService` over gRPC.

pub mod cache;
pub mod fold;
pub mod journal;
pub mod rules;
pub mod service;
pub mod stage;

pub use fold::{Profile, ProfileState, add_and_fold, fold};
pub use journal::{Added, Journal, JournalKey, journal_key};
pub use rules::{DEFAULT_PROFILE_RULES, ProfileRules, ProfileRulesError};

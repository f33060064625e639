//! Error taxonomy shared by every crate: whose fault an error is and whether a retry can help.

use serde::Serialize;

/// Whose fault an error is. Decides the HTTP status, whether the input goes to the dead-letter
/// log, and whether a retry is worth it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The input is wrong; retrying the same input gives the same answer.
    User,
    /// A system outside Kinfold failed (broker, registry, disk full); a retry may help.
    External,
    /// A bug or broken invariant inside Kinfold.
    Internal,
}

/// Implemented by every error type of the project so callers can route errors uniformly.
pub trait ErrorKind {
    /// Whose fault the error is.
    fn fault(&self) -> Fault;

    /// Whether retrying the same operation may succeed.
    fn is_retryable(&self) -> bool {
        matches!(self.fault(), Fault::External)
    }
}

//! The domain kernel of Kinfold.
//!
//! What it holds: typed identifiers (`Identifier` = kind, issuer, value), money in minor units,
//! the canonical event envelope that every source maps into, deterministic event ids, and the
//! ports (`EventLog`, `KvStore`, `Clock`) that every backend implements.
//!
//! Invariants:
//! - no I/O happens in this crate; adapters live in `kinfold-storage`;
//! - an `Identifier` that exists has been normalised and is not junk;
//! - an `EventId` is a function of the source's natural key only, so retries and replays of the
//!   same source event produce the same id.

pub mod dead_letter;
pub mod error;
pub mod event;
pub mod identifier;
pub mod money;
pub mod partitioner;
pub mod ports;
pub mod positions;
pub mod stage;
pub mod time;

pub use dead_letter::DeadLetter;
pub use error::{ErrorKind, Fault};
pub use event::{CanonicalEvent, EventFamily, EventId};
pub use identifier::{Identifier, IdentifierKind, JunkIdentifier};
pub use money::Money;

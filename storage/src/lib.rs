//! Storage adapters behind the ports of `kinfold-core`.
//!
//! - `embedded://DIR`: the single-machine default. One fjall database in `DIR` holds the event
//!   log (topics, partitions, consumer-group positions) and the key-value tables.
//! - `kafka://HOST:PORT` and `scylla://HOST:PORT/KEYSPACE`: the distributed backends, behind
//!   cargo features; a build without them says so clearly instead of failing later.
//!
//! Role code never names an adapter: it receives `Arc<dyn EventLog>` and `Arc<dyn KvStore>`
//! from [`resolve`]. Every backend must pass the [`conformance`] suite.

pub mod conformance;
pub mod embedded;
#[cfg(feature = "kafka")]
pub mod kafka;
mod resolver;

pub use embedded::{EmbeddedDatabase, EmbeddedKv, EmbeddedLog};
pub use resolver::{Backends, ResolveError, resolve, resolve_with_log};

//! Customers as the profile stage last wrote them, for the stages of the same process: the
//! profile stage takes a customer from here instead of reading and decoding their whole
//! partition again for each batch, and the segment stage reads the customer it is told about
//! with no read at all.
//!
//! Only the profile stage puts customers in, after their rows are durable, so an entry is
//! never older than the store. That holds only while this process is the one writer of the
//! customers it holds: the embedded log, where one process owns every partition (`kinfold
//! serve` uses the cache there and not on Kafka, where a rebalance could hand a partition to
//! another process and back). Entries are weighed by their journal's events, and the least
//! used give way past the capacity.

use crate::stage::StoredCustomer;
use std::sync::Arc;

/// Weighs an entry by its journal's events (one more for the rest of it).
#[derive(Debug, Clone, Copy)]
struct ByEvents;

impl quick_cache::Weighter<String, Arc<StoredCustomer>> for ByEvents {
    fn weight(&self, _: &String, stored: &Arc<StoredCustomer>) -> u64 {
        stored.journal.len() as u64 + 1
    }
}

/// The cache, shared by cloning.
#[derive(Clone)]
pub struct CustomerCache(Arc<quick_cache::sync::Cache<String, Arc<StoredCustomer>, ByEvents>>);

impl std::fmt::Debug for CustomerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerCache")
            .field("customers", &self.0.len())
            .field("events", &self.0.weight())
            .finish()
    }
}

impl CustomerCache {
    /// A cache of about `events` journal events in all.
    pub fn new(events: u64) -> Self {
        let customers = usize::try_from(events / 8).unwrap_or(usize::MAX).max(16);
        Self(Arc::new(quick_cache::sync::Cache::with_weighter(
            customers,
            events.max(1),
            ByEvents,
        )))
    }

    /// `customer` as last written, if held.
    pub fn get(&self, customer: &str) -> Option<Arc<StoredCustomer>> {
        self.0.get(customer)
    }

    /// Takes `customer` out (the profile stage, about to change them: until it puts them back,
    /// readers go to the store).
    pub fn take(&self, customer: &str) -> Option<StoredCustomer> {
        self.0
            .remove(customer)
            .map(|(_, stored)| Arc::unwrap_or_clone(stored))
    }

    /// Holds `customer` as just written, durably.
    pub fn put(&self, customer: String, stored: StoredCustomer) {
        self.0.insert(customer, Arc::new(stored));
    }

    /// Customers held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

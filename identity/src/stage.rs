//! The identity stage, in two parts on the shared stage loop ([`kinfold_core::stage`]), as
//! `docs/identity.md` lays out:
//!
//! - **forward** reads `events.canonical` (any number of partitions, spread over the processes)
//!   and copies each record, unchanged, to `identity.inputs`, whose one partition puts every
//!   input of the graph in one order;
//! - **resolve** reads `identity.inputs` (one partition, so one process at a time) and folds
//!   each input into the identity graph: events go to `events.resolved` keyed by their customer,
//!   every change to `identity.changes`. A batch is done once both appends are durable.
//!
//! The graph is the fold of `identity.inputs` up to the position being processed: when a
//! batch does not start where the graph stands (a restart, a retry after a failed append, the
//! partition coming back after a rebalance), the graph is first rebuilt from the log up to the
//! batch's first offset. Replaying a batch gives the same customers, so what a crash makes the
//! stage write twice is written twice identically. (Snapshots in the key-value store, to start
//! without reading the whole input log, come later.)

use crate::model::{IdentityGraph, Rules};
use crate::records::{InputRecord, change_record, resolved_record};
use kinfold_core::ports::{EventLog, LogError, LogRecord, OutgoingRecord, TopicPartition};
use kinfold_core::stage::Processor;
use kinfold_schemas::SchemaRegistry;
use kinfold_schemas::codec::decode_framed_canonical;
use std::ops::AddAssign;
use std::sync::{Arc, Mutex, PoisonError};

/// The identity stage's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityTopics {
    pub canonical: String,
    pub inputs: String,
    pub resolved: String,
    pub resolved_partitions: u32,
    pub changes: String,
    pub changes_partitions: u32,
}

impl Default for IdentityTopics {
    fn default() -> Self {
        Self {
            canonical: "events.canonical".to_owned(),
            inputs: "identity.inputs".to_owned(),
            resolved: "events.resolved".to_owned(),
            resolved_partitions: 8,
            changes: "identity.changes".to_owned(),
            changes_partitions: 8,
        }
    }
}

impl IdentityTopics {
    /// Creates the stage's topics (`identity.inputs` with its one partition).
    pub async fn ensure(&self, log: &dyn EventLog) -> Result<(), LogError> {
        log.ensure_topic(&self.inputs, 1).await?;
        log.ensure_topic(&self.resolved, self.resolved_partitions)
            .await?;
        log.ensure_topic(&self.changes, self.changes_partitions)
            .await?;
        Ok(())
    }
}

/// Copies canonical records to `identity.inputs`.
#[derive(Debug, Clone)]
pub struct ForwardProcessor {
    log: Arc<dyn EventLog>,
    topics: IdentityTopics,
}

impl ForwardProcessor {
    pub fn new(log: Arc<dyn EventLog>, topics: IdentityTopics) -> Self {
        Self { log, topics }
    }
}

impl Processor for ForwardProcessor {
    type Tally = u64;
    type Error = LogError;

    async fn process(
        &self,
        _partition: &TopicPartition,
        records: &[LogRecord],
    ) -> Result<u64, LogError> {
        let inputs: Vec<OutgoingRecord> = records
            .iter()
            .map(|record| {
                InputRecord::Event(record.value.clone()).outgoing(record.timestamp_millis)
            })
            .collect();
        self.log.append(&self.topics.inputs, inputs).await?;
        Ok(records.len() as u64)
    }
}

/// What the resolve part did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolveTally {
    pub events: u64,
    /// Events with no usable identifier: they belong to nobody and are not resolved.
    pub anonymous: u64,
    pub decisions: u64,
    /// Decisions the graph refused (an unknown customer, a broken limit): recorded, skipped.
    pub refused_decisions: u64,
    /// Inputs that could not be read: logged and skipped (they stay in `identity.inputs`).
    pub unreadable: u64,
    pub changes: u64,
}

impl AddAssign for ResolveTally {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.anonymous += other.anonymous;
        self.decisions += other.decisions;
        self.refused_decisions += other.refused_decisions;
        self.unreadable += other.unreadable;
        self.changes += other.changes;
    }
}

/// The graph and the offset of `identity.inputs` it has folded up to.
#[derive(Debug)]
struct Folded {
    graph: IdentityGraph,
    next: u64,
}

/// Folds `identity.inputs` into the identity graph.
#[derive(Debug)]
pub struct ResolveProcessor {
    log: Arc<dyn EventLog>,
    registry: Arc<SchemaRegistry>,
    rules: Rules,
    topics: IdentityTopics,
    /// `None` until the graph is built, and again after a failed batch.
    folded: Mutex<Option<Folded>>,
}

/// Why the resolve part could not finish a batch.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("event log: {0}")]
    Log(#[from] LogError),
}

/// How many input records a rebuild reads at a time.
const REBUILD_CHUNK: usize = 5_000;

impl ResolveProcessor {
    pub fn new(
        log: Arc<dyn EventLog>,
        registry: Arc<SchemaRegistry>,
        rules: Rules,
        topics: IdentityTopics,
    ) -> Self {
        Self {
            log,
            registry,
            rules,
            topics,
            folded: Mutex::new(None),
        }
    }

    /// A graph folded from `identity.inputs` up to (not including) `until`.
    async fn rebuild(&self, until: u64) -> Result<Folded, ResolveError> {
        let mut folded = Folded {
            graph: IdentityGraph::new(self.rules.clone()),
            next: 0,
        };
        while folded.next < until {
            let records = self
                .log
                .read(&self.topics.inputs, 0, folded.next, REBUILD_CHUNK)
                .await?;
            let Some(last) = records.last().map(|record| record.offset) else {
                break;
            };
            for record in records.iter().filter(|record| record.offset < until) {
                let _ = self.fold(&mut folded.graph, record);
            }
            folded.next = (last + 1).min(until);
        }
        if until > 0 {
            tracing::info!(
                inputs = until,
                "identity graph rebuilt from identity.inputs"
            );
        }
        Ok(folded)
    }

    /// Folds one input into `graph`; returns what to append.
    fn fold(&self, graph: &mut IdentityGraph, record: &LogRecord) -> Folding {
        let mut folding = Folding::default();
        match InputRecord::decode(&record.value) {
            Ok(InputRecord::Event(frame)) => {
                match decode_framed_canonical(&frame, &self.registry) {
                    Ok(event) => {
                        folding.tally.events += 1;
                        let resolution = graph.observe(event.event_id, &event.identifiers);
                        match resolution.customer {
                            Some(customer) => folding.resolved.push(resolved_record(
                                &frame,
                                customer,
                                record.timestamp_millis,
                            )),
                            None => folding.tally.anonymous += 1,
                        }
                        folding.push_changes(&resolution.changes, record.timestamp_millis);
                    }
                    Err(error) => {
                        tracing::error!(offset = record.offset, %error, "identity input does not decode as a canonical event; skipped");
                        folding.tally.unreadable += 1;
                    }
                }
            }
            Ok(InputRecord::Decision(decision)) => {
                folding.tally.decisions += 1;
                match graph.apply_decision(decision) {
                    Ok(changes) => folding.push_changes(&changes, record.timestamp_millis),
                    Err(error) => {
                        tracing::warn!(offset = record.offset, %error, "identity decision refused");
                        folding.tally.refused_decisions += 1;
                    }
                }
            }
            Err(error) => {
                tracing::error!(offset = record.offset, %error, "unreadable identity input; skipped");
                folding.tally.unreadable += 1;
            }
        }
        folding
    }
}

/// What folding inputs produced.
#[derive(Debug, Default)]
struct Folding {
    resolved: Vec<OutgoingRecord>,
    changes: Vec<OutgoingRecord>,
    tally: ResolveTally,
}

impl Folding {
    fn push_changes(&mut self, changes: &[crate::model::Change], timestamp_millis: i64) {
        self.tally.changes += changes.len() as u64;
        self.changes.extend(
            changes
                .iter()
                .map(|change| change_record(change, timestamp_millis)),
        );
    }

    fn extend(&mut self, other: Folding) {
        self.resolved.extend(other.resolved);
        self.changes.extend(other.changes);
        self.tally += other.tally;
    }
}

impl Processor for ResolveProcessor {
    type Tally = ResolveTally;
    type Error = ResolveError;

    async fn process(
        &self,
        _partition: &TopicPartition,
        records: &[LogRecord],
    ) -> Result<ResolveTally, ResolveError> {
        let Some(first) = records.first().map(|record| record.offset) else {
            return Ok(ResolveTally::default());
        };
        let current = self
            .folded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut folded = match current {
            Some(folded) if folded.next == first => folded,
            _ => self.rebuild(first).await?,
        };
        let mut output = Folding::default();
        for record in records {
            let folding = self.fold(&mut folded.graph, record);
            output.extend(folding);
            folded.next = record.offset + 1;
        }
        let (resolved, changes) = tokio::join!(
            self.log.append(&self.topics.resolved, output.resolved),
            self.log.append(&self.topics.changes, output.changes),
        );
        // Only a batch whose outputs are durable moves the graph on; after a failure the next
        // batch (this one again) finds no graph and rebuilds it from the log.
        resolved?;
        changes?;
        *self.folded.lock().unwrap_or_else(PoisonError::into_inner) = Some(folded);
        Ok(output.tally)
    }
}

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
//! The graph is the fold of `identity.inputs` up to the position being processed. Its state
//! is kept in the key-value store (table `identity_state`, one partition: the graph's inputs,
//! one row each, and the position in `identity.inputs` they reach), written in one atomic batch
//! after each batch's outputs are durable and before its offset is committed. When a batch does
//! not start where the graph in memory stands (a restart, a retry after a failed append, the
//! partition coming back after a rebalance), the graph is loaded from that state; inputs it
//! already covers are skipped (their outputs are durable). Without a state (or one behind the
//! batch) the graph is rebuilt from `identity.inputs` itself. Replaying a batch gives the same
//! customers, so what a crash makes the stage write twice is written twice identically.
//!
//! Every change is also kept per customer it is about (table `identity_changes`: partition the
//! customer id, clustering key the offset of the input that made it and its place among that
//! input's changes), written before the position so that a replayed batch rewrites the same
//! rows; `ListChanges` reads it. The graph in memory is shared ([`SharedGraph`]) with the gRPC
//! service, which reads it and waits on it for the decisions it appends.

use crate::model::{Change, CustomerId, GraphError, IdentityGraph, Input, Rules};
use crate::records::{
    InputRecord, ResolvedMarker, change_customers, change_record, resolved_record,
};
use bytes::Bytes;
use kinfold_core::ports::{
    EventLog, KvError, KvMutation, KvStore, LogError, LogRecord, OutgoingRecord, TopicPartition,
};
use kinfold_core::stage::Processor;
use kinfold_schemas::SchemaRegistry;
use kinfold_schemas::codec::decode_framed_canonical;
use std::collections::{BTreeMap, VecDeque};
use std::ops::AddAssign;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::sync::watch;

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
///
/// The stage loop runs several batches of a partition at once; their copies are queued in
/// offset order ([`EventLog::start_append`]), so that the events of one canonical partition
/// reach the graph in the order of that partition, and replaying a log gives the same order
/// again. A batch waits for the one before it to be queued, for at most
/// [`FORWARD_ORDER_WAIT`]: after a failure the one before may come back only later, and order
/// is a nicety (resolution is correct in any order), never a reason to stall.
#[derive(Debug, Clone)]
pub struct ForwardProcessor {
    log: Arc<dyn EventLog>,
    topics: IdentityTopics,
    /// The forwarding consumer group, whose committed offsets say where a partition starts.
    group: String,
    /// Per canonical partition, the offset after the last batch queued.
    queued: Arc<Mutex<BTreeMap<u32, u64>>>,
    queued_changed: Arc<tokio::sync::Notify>,
}

/// The longest a forwarded batch waits for the batch before it to be queued.
pub const FORWARD_ORDER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl ForwardProcessor {
    /// Forwards for consumer group `group`.
    pub fn new(log: Arc<dyn EventLog>, topics: IdentityTopics, group: impl Into<String>) -> Self {
        Self {
            log,
            topics,
            group: group.into(),
            queued: Arc::default(),
            queued_changed: Arc::default(),
        }
    }

    /// Whether the batch starting at `first` of `partition` is next (or a batch redone).
    fn is_next(&self, partition: u32, first: u64) -> bool {
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .is_some_and(|queued| first <= *queued)
    }

    /// Where the stage starts reading `partition` when nothing of it was queued here yet: the
    /// group's committed offset, else the start of the partition.
    async fn note_start(&self, partition: u32) -> Result<(), LogError> {
        let known = self
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&partition);
        if known {
            return Ok(());
        }
        let canonical = &self.topics.canonical;
        let start = match self
            .log
            .committed(&self.group, canonical, partition)
            .await?
        {
            Some(committed) => committed,
            None => self.log.watermarks(canonical, partition).await?.0,
        };
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(partition)
            .or_insert(start);
        Ok(())
    }
}

impl Processor for ForwardProcessor {
    type Tally = u64;
    type Error = LogError;

    async fn process(
        &self,
        partition: &TopicPartition,
        records: &[LogRecord],
    ) -> Result<u64, LogError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(0);
        };
        let inputs: Vec<OutgoingRecord> = records
            .iter()
            .map(|record| {
                InputRecord::Event(record.value.clone()).outgoing(record.timestamp_millis)
            })
            .collect();
        self.note_start(partition.partition).await?;
        let deadline = tokio::time::Instant::now() + FORWARD_ORDER_WAIT;
        while !self.is_next(partition.partition, first.offset) {
            let changed = self.queued_changed.notified();
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        let pending = self.log.start_append(&self.topics.inputs, inputs).await?;
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(partition.partition)
            .and_modify(|queued| *queued = (*queued).max(last.offset + 1))
            .or_insert(last.offset + 1);
        self.queued_changed.notify_waiters();
        pending.await?;
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
    /// Times the graph was loaded from its state in the key-value store.
    pub loaded_from_state: u64,
    /// Times the graph was rebuilt by reading `identity.inputs` from the start.
    pub rebuilt_from_log: u64,
}

impl AddAssign for ResolveTally {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.anonymous += other.anonymous;
        self.decisions += other.decisions;
        self.refused_decisions += other.refused_decisions;
        self.unreadable += other.unreadable;
        self.changes += other.changes;
        self.loaded_from_state += other.loaded_from_state;
        self.rebuilt_from_log += other.rebuilt_from_log;
    }
}

/// The graph and the offset of `identity.inputs` it has folded up to.
#[derive(Debug)]
struct Folded {
    graph: IdentityGraph,
    next: u64,
    /// How many of the graph's inputs the key-value state holds.
    persisted: usize,
}

const STATE_TABLE: &str = "identity_state";
const STATE_PARTITION: &[u8] = b"graph";
const POSITION_KEY: &[u8] = b"p";
const INPUT_PREFIX: u8 = b'i';
/// Each customer's changes: partition the customer id, clustering key
/// `input offset (u64 BE) ++ index among that input's changes (u32 BE)`, value the change as
/// JSON.
pub const CHANGES_TABLE: &str = "identity_changes";

fn input_key(sequence: usize) -> Bytes {
    let mut key = vec![INPUT_PREFIX];
    key.extend_from_slice(&(sequence as u64).to_be_bytes());
    Bytes::from(key)
}

/// The clustering key of a change in [`CHANGES_TABLE`].
pub fn change_key(input_offset: u64, index: u32) -> Bytes {
    let mut key = Vec::with_capacity(12);
    key.extend_from_slice(&input_offset.to_be_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    Bytes::from(key)
}

/// What a decision did: its changes, or why the graph refused it.
pub type DecisionOutcome = Result<Vec<Change>, GraphError>;

/// How many decisions' outcomes [`SharedGraph`] remembers for the callers waiting on them.
const REMEMBERED_OUTCOMES: usize = 1_024;

/// The identity graph as the resolve part holds it, shared with readers (the gRPC service).
///
/// Readers see the fold of `identity.inputs` up to where the resolve part has got; since the
/// inputs are durable and the fold deterministic, what they see is what every later replay
/// gives. [`Self::durable`] tells how far the outputs (resolved events, changes, state) are
/// durable too, and [`Self::outcome`] what a decision at an offset did.
#[derive(Debug)]
pub struct SharedGraph {
    folded: RwLock<Option<Folded>>,
    durable: watch::Sender<u64>,
    outcomes: Mutex<VecDeque<(u64, DecisionOutcome)>>,
}

impl Default for SharedGraph {
    fn default() -> Self {
        Self {
            folded: RwLock::new(None),
            durable: watch::Sender::new(0),
            outcomes: Mutex::new(VecDeque::new()),
        }
    }
}

impl SharedGraph {
    /// Runs `read` on the graph; `None` while this process holds no graph (it does not own
    /// `identity.inputs`, or is loading it).
    pub fn read<R>(&self, read: impl FnOnce(&IdentityGraph) -> R) -> Option<R> {
        let folded = self.folded.read().unwrap_or_else(PoisonError::into_inner);
        folded.as_ref().map(|folded| read(&folded.graph))
    }

    /// Whether a graph is in memory that has folded `identity.inputs` at least up to `until`.
    pub fn holds(&self, until: u64) -> bool {
        self.folded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|folded| folded.next >= until)
    }

    /// The offset of `identity.inputs` below which every input's outputs are durable.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// What the decision at `offset` of `identity.inputs` did, if it was applied here lately.
    pub fn outcome(&self, offset: u64) -> Option<DecisionOutcome> {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(at, _)| *at == offset)
            .map(|(_, outcome)| outcome.clone())
    }

    fn remember(&self, outcomes: Vec<(u64, DecisionOutcome)>) {
        if outcomes.is_empty() {
            return;
        }
        let mut remembered = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        remembered.extend(outcomes);
        while remembered.len() > REMEMBERED_OUTCOMES {
            remembered.pop_front();
        }
    }

    fn replace(&self, folded: Option<Folded>) {
        *self.folded.write().unwrap_or_else(PoisonError::into_inner) = folded;
    }
}

/// Folds `identity.inputs` into the identity graph.
#[derive(Debug)]
pub struct ResolveProcessor {
    log: Arc<dyn EventLog>,
    registry: Arc<SchemaRegistry>,
    rules: Rules,
    topics: IdentityTopics,
    /// Where the graph's state is kept; without it the graph is rebuilt from the log.
    state: Option<Arc<dyn KvStore>>,
    /// The graph: `None` until it is built, and again after a failed batch.
    shared: Arc<SharedGraph>,
    /// Held while the graph is loaded or rebuilt, so that it is done once.
    loading: tokio::sync::Mutex<()>,
}

/// Why the resolve part could not finish a batch.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("identity state: {0}")]
    State(#[from] KvError),
    #[error("identity state: an input does not read back: {0}")]
    CorruptState(String),
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
            state: None,
            shared: Arc::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// The graph, for readers.
    pub fn shared(&self) -> Arc<SharedGraph> {
        self.shared.clone()
    }

    /// Keeps the graph's state in `kv`, with its position.
    #[must_use]
    pub fn with_state(mut self, kv: Arc<dyn KvStore>) -> Self {
        self.state = Some(kv);
        self
    }

    /// Makes sure the graph in memory has folded `identity.inputs` at least up to `until`
    /// (exclusive; offsets below it are processed and their outputs durable): loads it from the
    /// state, or else rebuilds it from the log. The gRPC service calls it when asked before the
    /// first batch.
    pub async fn prepare(&self, until: u64) -> Result<ResolveTally, ResolveError> {
        let mut tally = ResolveTally::default();
        let _loading = self.loading.lock().await;
        if self.shared.holds(until) {
            return Ok(tally);
        }
        let folded = match self.load().await? {
            Some(loaded) if loaded.next >= until => {
                tally.loaded_from_state += 1;
                loaded
            }
            _ => {
                tally.rebuilt_from_log += 1;
                self.rebuild(until).await?
            }
        };
        // What the state or the processed offsets cover has its outputs durable.
        self.shared.durable.send_replace(folded.next);
        self.shared.replace(Some(folded));
        Ok(tally)
    }

    /// The graph as the key-value state has it, if there is one.
    async fn load(&self) -> Result<Option<Folded>, ResolveError> {
        let Some(kv) = &self.state else {
            return Ok(None);
        };
        let Some(position) = kv.get(STATE_TABLE, STATE_PARTITION, POSITION_KEY).await? else {
            return Ok(None);
        };
        let next = u64::from_be_bytes(
            position[..]
                .try_into()
                .map_err(|_| ResolveError::CorruptState("position".into()))?,
        );
        let mut inputs: Vec<Input> = Vec::new();
        let mut from = input_key(0);
        loop {
            let rows = kv
                .scan_partition(STATE_TABLE, STATE_PARTITION, &from, REBUILD_CHUNK)
                .await?;
            let mut more = false;
            for row in &rows {
                if row.clustering_key.first() != Some(&INPUT_PREFIX) {
                    more = false;
                    break;
                }
                inputs.push(
                    serde_json::from_slice(&row.value)
                        .map_err(|error| ResolveError::CorruptState(error.to_string()))?,
                );
                more = true;
            }
            if !more || rows.len() < REBUILD_CHUNK {
                break;
            }
            from = input_key(inputs.len());
        }
        let persisted = inputs.len();
        Ok(Some(Folded {
            graph: IdentityGraph::replay(self.rules.clone(), &inputs),
            next,
            persisted,
        }))
    }

    /// The state rows the key-value store lacks: the graph's inputs since the last write, and
    /// the position they reach.
    fn state_mutations(folded: &Folded) -> Vec<KvMutation> {
        let count = folded.graph.input_count();
        let mut mutations = Vec::with_capacity(count - folded.persisted + 1);
        for (sequence, input) in
            (folded.persisted..).zip(folded.graph.inputs_since(folded.persisted))
        {
            mutations.push(KvMutation::Put {
                clustering_key: input_key(sequence),
                value: Bytes::from(serde_json::to_vec(&input).expect("inputs serialise")),
            });
        }
        mutations.push(KvMutation::Put {
            clustering_key: Bytes::from_static(POSITION_KEY),
            value: Bytes::copy_from_slice(&folded.next.to_be_bytes()),
        });
        mutations
    }

    /// Writes each customer's new changes, then the graph's new inputs and the position in one
    /// atomic, durable batch (which makes the changes before it durable too).
    async fn persist(
        &self,
        change_rows: BTreeMap<CustomerId, Vec<KvMutation>>,
        state: Vec<KvMutation>,
    ) -> Result<(), ResolveError> {
        let Some(kv) = &self.state else {
            return Ok(());
        };
        for (customer, rows) in change_rows {
            kv.apply(CHANGES_TABLE, customer.to_string().as_bytes(), rows, false)
                .await?;
        }
        kv.apply(STATE_TABLE, STATE_PARTITION, state, true).await?;
        Ok(())
    }

    /// A graph folded from `identity.inputs` up to (not including) `until`.
    async fn rebuild(&self, until: u64) -> Result<Folded, ResolveError> {
        let mut folded = Folded {
            graph: IdentityGraph::new(self.rules.clone()),
            next: 0,
            persisted: 0,
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
                        folding.push_changes(&resolution.changes, record);
                    }
                    Err(error) => {
                        tracing::error!(offset = record.offset, %error, "identity input does not decode as a canonical event; skipped");
                        folding.tally.unreadable += 1;
                    }
                }
            }
            Ok(InputRecord::Decision(decision)) => {
                folding.tally.decisions += 1;
                let outcome = graph.apply_decision(decision);
                match &outcome {
                    Ok(changes) => folding.push_changes(changes, record),
                    Err(error) => {
                        tracing::warn!(offset = record.offset, %error, "identity decision refused");
                        folding.tally.refused_decisions += 1;
                    }
                }
                folding.outcomes.push((record.offset, outcome));
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
    /// Each customer's new rows of [`CHANGES_TABLE`].
    change_rows: BTreeMap<CustomerId, Vec<KvMutation>>,
    /// What each decision did, by its offset.
    outcomes: Vec<(u64, DecisionOutcome)>,
    tally: ResolveTally,
}

impl Folding {
    /// The changes `record`'s input made.
    fn push_changes(&mut self, changes: &[Change], record: &LogRecord) {
        self.tally.changes += changes.len() as u64;
        for (index, change) in changes.iter().enumerate() {
            // The same JSON goes to identity.changes and to each customer's rows.
            let outgoing = change_record(change, record.timestamp_millis);
            if let Some((customer, marker)) = ResolvedMarker::of_change(change) {
                self.resolved
                    .push(marker.outgoing(customer, record.timestamp_millis));
            }
            for customer in change_customers(change) {
                self.change_rows
                    .entry(customer)
                    .or_default()
                    .push(KvMutation::Put {
                        clustering_key: change_key(record.offset, index as u32),
                        value: outgoing.value.clone(),
                    });
            }
            self.changes.push(outgoing);
        }
    }

    fn extend(&mut self, other: Folding) {
        self.resolved.extend(other.resolved);
        self.changes.extend(other.changes);
        for (customer, rows) in other.change_rows {
            self.change_rows.entry(customer).or_default().extend(rows);
        }
        self.outcomes.extend(other.outcomes);
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
        let mut output = Folding {
            tally: self.prepare(first).await?,
            ..Folding::default()
        };
        let (state, next, inputs) = {
            let mut guard = self
                .shared
                .folded
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let folded = guard
                .as_mut()
                .ok_or_else(|| ResolveError::CorruptState("the graph went away".into()))?;
            for record in records {
                // Folded before (its outputs are durable): a batch replayed after a crash.
                if record.offset < folded.next {
                    continue;
                }
                let folding = self.fold(&mut folded.graph, record);
                output.extend(folding);
                folded.next = record.offset + 1;
            }
            (
                Self::state_mutations(folded),
                folded.next,
                folded.graph.input_count(),
            )
        };
        let (resolved, changes) = tokio::join!(
            self.log.append(&self.topics.resolved, output.resolved),
            self.log.append(&self.topics.changes, output.changes),
        );
        // Only a batch whose outputs are durable moves the graph on; after a failure the next
        // batch (this one again) finds no graph and loads or rebuilds it.
        let written = match resolved.and(changes) {
            Ok(_) => self.persist(output.change_rows, state).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = written {
            self.shared.replace(None);
            return Err(error);
        }
        if let Some(folded) = self
            .shared
            .folded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            folded.persisted = inputs;
        }
        self.shared.remember(output.outcomes);
        self.shared.durable.send_replace(next);
        Ok(output.tally)
    }
}

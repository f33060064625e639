//! The stage loop, written once for every stage: consume → process → write → commit.
//!
//! A stage is a member of a consumer group over its source topics ([`GroupMember`]). Each batch
//! of records goes to the stage's [`Processor`], which returns only once the batch's effect is
//! durable (events appended, dead letters appended, tables written). Only then are the batch's
//! offsets marked done, and the group's position moves up to the highest *contiguous* done
//! offset of each partition ([`PartitionPositions`]): batches run concurrently and may finish
//! out of order, but no offset is committed past one whose effect is not durable.
//!
//! - A failed batch is retried with backoff while its partition is owned; the stage never dies
//!   on a failing store, its lag grows instead.
//! - On revocation the loop stops taking records of those partitions, waits for their in-flight
//!   batches up to the drain deadline (abandoning the rest, which the next owner redoes),
//!   commits what is contiguous, drops their state, and only then lets the partitions go.
//! - Lost partitions (the member was taken for dead) are dropped without a commit.
//! - Shutdown stops reading, drains every in-flight batch (same deadline), commits, and leaves
//!   the group so the partitions move at once.
//!
//! At-least-once, then: a crash replays what was not committed, and processors are idempotent
//! (deterministic event ids, positions stored with data).

use crate::ports::group::{GroupEvent, GroupMember, GroupOptions, join_group};
use crate::ports::log::{EventLog, LogError, LogRecord, TopicPartition};
use crate::positions::PartitionPositions;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::ops::AddAssign;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::Instant;

/// The gauge of records not yet processed, per stage and partition.
pub const CONSUMER_LAG: &str = "kinfold_consumer_lag";
/// The counter of commits the member refused because the partition was not owned.
pub const COMMITS_REFUSED: &str = "kinfold_stage_commits_refused_total";
/// The counter of batch attempts that failed and were retried.
pub const BATCH_RETRIES: &str = "kinfold_stage_batch_retries_total";
/// The counter of times a member owning nothing left and rejoined a group nobody consumed in.
pub const GROUP_REJOINS: &str = "kinfold_group_rejoins_total";

/// Describes the stage loop's metrics to the recorder.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "Records of an owned source partition not yet processed and committed (high watermark minus committed position)"
    );
    metrics::describe_counter!(
        COMMITS_REFUSED,
        "Commits refused because the partition was not owned at commit time (should stay 0)"
    );
    metrics::describe_counter!(
        BATCH_RETRIES,
        "Batches whose processing failed and was retried"
    );
    metrics::describe_counter!(
        GROUP_REJOINS,
        "Times a member that owned nothing while partitions lagged and no commit moved left and rejoined the group"
    );
}

/// The part of a stage that differs from stage to stage.
pub trait Processor: Send + Sync + 'static {
    /// What processing a batch counted (records accepted, rejected, ...).
    type Tally: Default + AddAssign + Clone + Send + fmt::Debug + 'static;
    /// A failure worth a retry.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Processes the records of one partition, in offset order. Returns once their whole
    /// effect, dead letters included, is durable; an error means nothing may be assumed done.
    fn process(
        &self,
        partition: &TopicPartition,
        records: &[LogRecord],
    ) -> impl Future<Output = Result<Self::Tally, Self::Error>> + Send;
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct StageConfig {
    /// The stage's name in logs and metrics.
    pub name: String,
    /// Most batches processed at once.
    pub max_in_flight: usize,
    /// How often positions are committed (and also on revocation and shutdown).
    pub commit_interval: Duration,
    /// How long to wait for records before looking around again.
    pub idle: Duration,
    /// How often consumer lag is measured.
    pub lag_interval: Duration,
    /// The longest pause between retries of a failing batch.
    pub max_backoff: Duration,
}

impl StageConfig {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            max_in_flight: 8,
            commit_interval: Duration::from_millis(500),
            idle: Duration::from_millis(100),
            lag_interval: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What other parts of the process may see of a running stage.
#[derive(Debug, Default)]
pub struct StageStatus {
    ready: AtomicBool,
    positions: Mutex<HashMap<TopicPartition, u64>>,
}

impl StageStatus {
    /// True once the member has its first assignment and each partition's start position.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Owned partitions with their committed position.
    pub fn positions(&self) -> Vec<(TopicPartition, u64)> {
        let mut positions: Vec<_> = self
            .lock()
            .iter()
            .map(|(partition, position)| (partition.clone(), *position))
            .collect();
        positions.sort();
        positions
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, u64>> {
        self.positions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a stage run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageReport<T> {
    pub records: u64,
    pub tally: T,
    pub retries: u64,
    /// Assignments, revocations and losses seen.
    pub rebalances: u64,
    /// Commits the member refused because the partition was not owned (a bug if ever > 0).
    pub refused_commits: u64,
}

/// Why the stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("event log: {0}")]
    Log(#[from] LogError),
}

struct Batch {
    partition: TopicPartition,
    /// The first offset the batch covers: offsets between it and the first record's hold
    /// nothing to process (transaction markers, compacted records).
    first: u64,
    records: Arc<Vec<LogRecord>>,
    attempt: u32,
}

struct Running {
    batch: Batch,
    handle: AbortHandle,
}

type Outcome<P> = Result<<P as Processor>::Tally, <P as Processor>::Error>;

struct Loop<P: Processor> {
    processor: Arc<P>,
    config: StageConfig,
    status: Arc<StageStatus>,
    member: Box<dyn GroupMember>,
    positions: PartitionPositions,
    committed: HashMap<TopicPartition, u64>,
    /// The next offset expected from each owned partition.
    expected: HashMap<TopicPartition, u64>,
    in_flight: JoinSet<Outcome<P>>,
    batches: HashMap<Id, Running>,
    report: StageReport<P::Tally>,
}

/// Runs a stage until `shutdown` turns true, then drains, commits and leaves the group.
pub async fn run_stage<P: Processor>(
    log: Arc<dyn EventLog>,
    processor: Arc<P>,
    options: GroupOptions,
    config: StageConfig,
    status: Arc<StageStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<StageReport<P::Tally>, StageError> {
    let drain_timeout = options.drain_timeout;
    let member = join_group(log.clone(), options).await?;
    let lag = tokio::spawn(measure_lag(
        log,
        config.name.clone(),
        status.clone(),
        config.lag_interval,
    ));
    let mut stage = Loop {
        processor,
        status,
        member,
        positions: PartitionPositions::default(),
        committed: HashMap::new(),
        expected: HashMap::new(),
        in_flight: JoinSet::new(),
        batches: HashMap::new(),
        report: StageReport::default(),
        config,
    };
    let result = stage.run(&mut shutdown, drain_timeout).await;
    lag.abort();
    stage.status.ready.store(false, Ordering::Release);
    let report = stage.report.clone();
    let left = stage.member.leave().await;
    result?;
    left?;
    Ok(report)
}

impl<P: Processor> Loop<P> {
    async fn run(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        drain_timeout: Duration,
    ) -> Result<(), StageError> {
        let mut commit_tick = tokio::time::interval(self.config.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*shutdown.borrow() {
            let room = self.in_flight.len() < self.config.max_in_flight;
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(joined) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    self.finish(joined, &HashSet::new());
                }
                _ = commit_tick.tick() => self.commit(None).await?,
                event = self.member.next(self.config.idle), if room => {
                    self.on_event(event?, drain_timeout).await?;
                }
            }
        }
        // Graceful drain: no new records; finish what is in flight, commit, then leave.
        let all: HashSet<TopicPartition> = self
            .positions
            .committable()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        self.drain(&all, Instant::now() + drain_timeout).await;
        self.commit(None).await?;
        Ok(())
    }

    async fn on_event(
        &mut self,
        event: GroupEvent,
        drain_timeout: Duration,
    ) -> Result<(), StageError> {
        match event {
            GroupEvent::Assigned(partitions) => {
                self.report.rebalances += 1;
                let mut status = self.status.lock();
                for (partition, start) in partitions {
                    tracing::info!(stage = %self.config.name, %partition, start, "partition assigned");
                    self.positions.assign(partition.clone(), start);
                    self.committed.insert(partition.clone(), start);
                    self.expected.insert(partition.clone(), start);
                    status.insert(partition, start);
                }
                drop(status);
                self.status.ready.store(true, Ordering::Release);
            }
            GroupEvent::Records {
                partition,
                mut records,
            } => {
                let Some(expected) = self.expected.get_mut(&partition) else {
                    tracing::warn!(stage = %self.config.name, %partition, "records of a partition not owned, dropped");
                    return Ok(());
                };
                let first = *expected;
                records.retain(|record| record.offset >= first);
                let Some(last) = records.last() else {
                    return Ok(());
                };
                *expected = last.offset + 1;
                self.report.records += records.len() as u64;
                self.spawn(Batch {
                    partition,
                    first,
                    records: Arc::new(records),
                    attempt: 0,
                });
            }
            GroupEvent::Revoking { partitions, done } => {
                self.report.rebalances += 1;
                let revoked: HashSet<TopicPartition> = partitions.into_iter().collect();
                self.drain(&revoked, Instant::now() + drain_timeout).await;
                self.commit(Some(&revoked)).await?;
                self.release(&revoked);
                done.done();
            }
            GroupEvent::Lost(partitions) => {
                self.report.rebalances += 1;
                let lost: HashSet<TopicPartition> = partitions.into_iter().collect();
                self.abort(&lost);
                self.release(&lost);
            }
            GroupEvent::Idle => {}
        }
        Ok(())
    }

    fn spawn(&mut self, batch: Batch) {
        let processor = self.processor.clone();
        let partition = batch.partition.clone();
        let records = batch.records.clone();
        let backoff = if batch.attempt == 0 {
            Duration::ZERO
        } else {
            (Duration::from_millis(100) * 2u32.saturating_pow(batch.attempt - 1))
                .min(self.config.max_backoff)
        };
        let handle = self.in_flight.spawn(async move {
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            processor.process(&partition, &records).await
        });
        self.batches.insert(handle.id(), Running { batch, handle });
    }

    /// Takes in a finished batch: marks its offsets done, or retries it unless its partition is
    /// gone or `leaving`.
    fn finish(
        &mut self,
        joined: Result<(Id, Outcome<P>), JoinError>,
        leaving: &HashSet<TopicPartition>,
    ) {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome),
            Err(error) => {
                self.batches.remove(&error.id());
                if error.is_panic() {
                    tracing::error!(stage = %self.config.name, %error, "a batch panicked; its offsets stay uncommitted");
                }
                return;
            }
        };
        let Some(Running { batch, .. }) = self.batches.remove(&id) else {
            return;
        };
        match outcome {
            Ok(tally) => {
                self.report.tally += tally;
                let last = batch
                    .records
                    .last()
                    .map_or(batch.first, |record| record.offset);
                for offset in batch.first..=last {
                    self.positions.mark_done(&batch.partition, offset);
                }
            }
            Err(error) => {
                let owned =
                    self.positions.owns(&batch.partition) && !leaving.contains(&batch.partition);
                tracing::warn!(
                    stage = %self.config.name,
                    partition = %batch.partition,
                    attempt = batch.attempt,
                    retry = owned,
                    %error,
                    "batch failed"
                );
                if owned {
                    self.report.retries += 1;
                    metrics::counter!(BATCH_RETRIES, "stage" => self.config.name.clone())
                        .increment(1);
                    self.spawn(Batch {
                        attempt: batch.attempt + 1,
                        ..batch
                    });
                }
            }
        }
    }

    /// Waits until no batch of `partitions` is in flight, or the deadline; then abandons the
    /// ones still running.
    async fn drain(&mut self, partitions: &HashSet<TopicPartition>, deadline: Instant) {
        while self
            .batches
            .values()
            .any(|running| partitions.contains(&running.batch.partition))
        {
            match tokio::time::timeout_at(deadline, self.in_flight.join_next_with_id()).await {
                Ok(Some(joined)) => self.finish(joined, partitions),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(stage = %self.config.name, "drain deadline passed; abandoning in-flight batches");
                    break;
                }
            }
        }
        self.abort(partitions);
    }

    fn abort(&mut self, partitions: &HashSet<TopicPartition>) {
        self.batches.retain(|_, running| {
            let doomed = partitions.contains(&running.batch.partition);
            if doomed {
                running.handle.abort();
            }
            !doomed
        });
    }

    fn release(&mut self, partitions: &HashSet<TopicPartition>) {
        let mut status = self.status.lock();
        for partition in partitions {
            self.positions.revoke(partition);
            self.committed.remove(partition);
            self.expected.remove(partition);
            status.remove(partition);
            metrics::gauge!(
                CONSUMER_LAG,
                "stage" => self.config.name.clone(),
                "topic" => partition.topic.clone(),
                "partition" => partition.partition.to_string()
            )
            .set(0.0);
            tracing::info!(stage = %self.config.name, %partition, "partition released");
        }
    }

    /// Commits every owned partition (or only `only`) whose contiguous position moved.
    async fn commit(&mut self, only: Option<&HashSet<TopicPartition>>) -> Result<(), StageError> {
        let moved: Vec<(TopicPartition, u64)> = self
            .positions
            .committable()
            .into_iter()
            .filter(|(partition, _)| only.is_none_or(|only| only.contains(partition)))
            .filter(|(partition, position)| self.committed.get(partition) != Some(position))
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        let refused = self.member.commit(&moved).await?;
        self.report.refused_commits += refused.len() as u64;
        for partition in &refused {
            tracing::error!(stage = %self.config.name, %partition, "commit refused: partition not owned");
            metrics::counter!(COMMITS_REFUSED, "stage" => self.config.name.clone()).increment(1);
        }
        let mut status = self.status.lock();
        for (partition, position) in moved {
            if refused.contains(&partition) {
                continue;
            }
            self.committed.insert(partition.clone(), position);
            status.insert(partition, position);
        }
        Ok(())
    }
}

/// Sets the lag gauge of every owned partition, every `interval`.
async fn measure_lag(
    log: Arc<dyn EventLog>,
    stage: String,
    status: Arc<StageStatus>,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        for (partition, position) in status.positions() {
            let Ok((_, high)) = log.watermarks(&partition.topic, partition.partition).await else {
                continue;
            };
            metrics::gauge!(
                CONSUMER_LAG,
                "stage" => stage.clone(),
                "topic" => partition.topic.clone(),
                "partition" => partition.partition.to_string()
            )
            .set(high.saturating_sub(position) as f64);
        }
    }
}

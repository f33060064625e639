//! Consumer-group membership on Kafka.
//!
//! One thread per member polls a subscribed `BaseConsumer`; librdkafka runs the rebalance
//! callback on that thread, which is what lets a revocation wait for the stage:
//!
//! - **Assign**: each partition's start is chosen explicitly (the stage's stored position, else
//!   the group's committed offset, else the low watermark; clamped to the watermarks), the
//!   partitions become owned, the stage is told, and only then is the consumer assigned at
//!   those offsets.
//! - **Revoke**: records already polled are handed over first, then the stage is told and the
//!   thread waits until the stage has drained, committed and dropped the partitions' state (or
//!   the drain deadline passes); only then does ownership end and the consumer unassign.
//! - **Lost** (the broker took the partitions because the member looked dead): ownership ends at
//!   once, with no commit.
//!
//! Commits run on the polling thread too: the stage asks, the thread commits between polls or,
//! during a revocation, while it waits for the stage. Ownership changes and commits are thus
//! one sequence on one thread: a commit is made only for a partition owned at that moment, can
//! never land after the partition was let go, and never waits on a rebalance that waits on it.
//! Every ownership change and every commit is logged at target `kinfold::audit`.
//!
//! A watchdog on the same thread guards against a generation in which nobody consumes (see
//! [`Watchdog`]): a member that has owned nothing for two session timeouts while partitions lag
//! and no committed offset moves leaves and rejoins.

use super::{TIMEOUT, kafka_error, log_record};
use kinfold_core::ports::{
    GroupEvent, GroupMember, GroupOptions, LogError, LogRecord, RevokeDone, TopicPartition,
};
use kinfold_core::stage::GROUP_REJOINS;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const AUDIT: &str = "kinfold::audit";
/// Room for this many deliveries between the polling thread and the stage.
const CHANNEL: usize = 16;
/// How long a delivery may wait for room before the thread looks at `closing` again.
const SEND_STEP: Duration = Duration::from_millis(2);

type Delivery = Result<GroupEvent, LogError>;

/// A commit the stage asks the polling thread for; the answer lists the partitions refused.
struct CommitRequest {
    positions: Vec<(TopicPartition, u64)>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<TopicPartition>, LogError>>,
}

/// How long the stage waits for the polling thread to make a commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// State shared by the polling thread (in the rebalance callback) and the member's commits.
#[derive(Debug)]
struct Shared {
    group: String,
    client_id: String,
    owned: Mutex<BTreeSet<TopicPartition>>,
    closing: AtomicBool,
}

impl Shared {
    fn owned(&self) -> MutexGuard<'_, BTreeSet<TopicPartition>> {
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// One line of the ownership and commit audit; `offset` is a start or committed position.
    fn audit(&self, action: &str, partition: &TopicPartition, offset: Option<u64>) {
        tracing::info!(
            target: AUDIT,
            action,
            group = %self.group,
            member = %self.client_id,
            topic = %partition.topic,
            partition = partition.partition,
            offset,
            "{action}"
        );
    }
}

struct GroupContext {
    shared: Arc<Shared>,
    options: GroupOptions,
    deliveries: mpsc::Sender<Delivery>,
    /// Records polled but not yet handed to the stage, per partition.
    pending: Mutex<HashMap<TopicPartition, Vec<LogRecord>>>,
    /// Commits the stage asked for.
    commits: Mutex<std::sync::mpsc::Receiver<CommitRequest>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match self.assign(consumer, tpl) {
                    Ok(start) => {
                        let result = if cooperative {
                            consumer.incremental_assign(&start)
                        } else {
                            consumer.assign(&start)
                        };
                        if let Err(error) = result {
                            self.fail(consumer, format!("cannot assign partitions: {error}"));
                        }
                    }
                    Err(error) => self.fail(consumer, error.to_string()),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl);
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(error) = result {
                    tracing::warn!(group = %self.shared.group, %error, "cannot unassign");
                }
            }
            other => {
                tracing::warn!(group = %self.shared.group, error = ?other, "rebalance error; dropping the assignment");
                let all = consumer.assignment().unwrap_or_default();
                self.revoke(consumer, &all);
                let _ = consumer.unassign();
            }
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|element| TopicPartition {
            topic: element.topic().to_owned(),
            partition: element.partition() as u32,
        })
        .collect()
}

impl GroupContext {
    /// Hands `delivery` to the stage, waiting for room; false when the stage is gone or the
    /// member is closing.
    fn deliver(&self, consumer: &BaseConsumer<Self>, mut delivery: Delivery) -> bool {
        loop {
            match self.deliveries.try_send(delivery) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(returned)) => {
                    if self.shared.closing() {
                        return false;
                    }
                    // The stage may be waiting for a commit before it reads on.
                    self.serve_commits(consumer);
                    delivery = returned;
                    std::thread::sleep(SEND_STEP);
                }
            }
        }
    }

    fn fail(&self, consumer: &BaseConsumer<Self>, reason: String) {
        tracing::error!(group = %self.shared.group, %reason, "consumer group failure");
        self.deliver(consumer, Err(LogError::Storage(format!("kafka: {reason}"))));
    }

    fn buffered(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(Vec::len)
            .sum()
    }

    fn buffer(&self, message: &BorrowedMessage<'_>) {
        let partition = TopicPartition {
            topic: message.topic().to_owned(),
            partition: message.partition() as u32,
        };
        let record = log_record(message);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(partition)
            .or_default()
            .push(record);
    }

    /// Hands every polled record to the stage, a delivery per partition.
    fn flush(&self, consumer: &BaseConsumer<Self>) {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        for (partition, records) in pending {
            if records.is_empty() {
                continue;
            }
            if !self.deliver(consumer, Ok(GroupEvent::Records { partition, records })) {
                return;
            }
        }
    }

    /// Chooses the start of each assigned partition, takes ownership, tells the stage; returns
    /// the list to assign, with explicit offsets.
    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Result<TopicPartitionList, LogError> {
        let partitions = partitions_of(tpl);
        let committed = if partitions.is_empty() {
            TopicPartitionList::new()
        } else {
            consumer
                .committed_offsets(tpl.clone(), TIMEOUT)
                .map_err(kafka_error)?
        };
        let mut start = TopicPartitionList::new();
        let mut starts = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let stored = self
                .options
                .stored_positions
                .as_ref()
                .and_then(|stored| stored.position(&partition));
            let group_position = committed
                .find_partition(&partition.topic, partition.partition as i32)
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) if offset >= 0 => Some(offset as u64),
                    _ => None,
                });
            let (low, high) = consumer
                .fetch_watermarks(&partition.topic, partition.partition as i32, TIMEOUT)
                .map_err(kafka_error)?;
            let (low, high) = (low.max(0) as u64, high.max(0) as u64);
            let wanted = stored.or(group_position).unwrap_or(low);
            if wanted < low {
                tracing::warn!(
                    group = %self.shared.group,
                    %partition,
                    wanted,
                    low,
                    "position is below the low watermark (records expired); starting at the low watermark"
                );
            }
            let position = wanted.clamp(low, high);
            start
                .add_partition_offset(
                    &partition.topic,
                    partition.partition as i32,
                    Offset::Offset(position as i64),
                )
                .map_err(kafka_error)?;
            starts.push((partition, position));
        }
        {
            let mut owned = self.shared.owned();
            for (partition, position) in &starts {
                owned.insert(partition.clone());
                self.shared.audit("owned", partition, Some(*position));
            }
        }
        self.deliver(consumer, Ok(GroupEvent::Assigned(starts)));
        Ok(start)
    }

    /// Lets the stage finish with the revoked partitions, then ends their ownership.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions = partitions_of(tpl);
        if partitions.is_empty() {
            return;
        }
        let lost = consumer.assignment_lost();
        if !self.shared.closing() {
            if lost {
                self.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                self.release(&partitions, "lost");
                self.deliver(consumer, Ok(GroupEvent::Lost(partitions)));
                return;
            }
            self.flush(consumer);
            let (done, handled) = RevokeDone::channel();
            let delivered = self.deliver(
                consumer,
                Ok(GroupEvent::Revoking {
                    partitions: partitions.clone(),
                    done,
                }),
            );
            if delivered {
                self.serve_commits(consumer);
                // The stage applies the drain deadline itself; this margin only guards
                // against a stage that stopped reading.
                let deadline = Instant::now() + self.options.drain_timeout + Duration::from_secs(5);
                while Instant::now() < deadline && !self.shared.closing() {
                    // The stage commits the revoked partitions before it answers.
                    self.serve_commits(consumer);
                    match handled.recv_timeout(Duration::from_millis(10)) {
                        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    }
                }
            }
        }
        self.release(&partitions, if lost { "lost" } else { "revoked" });
    }

    /// Makes the commits the stage asked for, for the partitions owned now.
    fn serve_commits(&self, consumer: &BaseConsumer<Self>) {
        let requests: Vec<CommitRequest> = self
            .commits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_iter()
            .collect();
        for request in requests {
            let answer = self.commit(consumer, request.positions);
            let _ = request.reply.send(answer);
        }
    }

    fn commit(
        &self,
        consumer: &BaseConsumer<Self>,
        positions: Vec<(TopicPartition, u64)>,
    ) -> Result<Vec<TopicPartition>, LogError> {
        let owned = self.shared.owned();
        let mut offsets = TopicPartitionList::new();
        let mut refused = Vec::new();
        let mut committing = Vec::new();
        for (partition, position) in positions {
            if !owned.contains(&partition) {
                refused.push(partition);
                continue;
            }
            offsets
                .add_partition_offset(
                    &partition.topic,
                    partition.partition as i32,
                    Offset::Offset(position as i64),
                )
                .map_err(kafka_error)?;
            committing.push((partition, position));
        }
        if !committing.is_empty() {
            consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(kafka_error)?;
            for (partition, position) in committing {
                self.shared.audit("commit", &partition, Some(position));
            }
        }
        Ok(refused)
    }

    fn release(&self, partitions: &[TopicPartition], why: &str) {
        let mut owned = self.shared.owned();
        for partition in partitions {
            if owned.remove(partition) {
                if why == "lost" {
                    tracing::warn!(group = %self.shared.group, %partition, "partition lost: the group took it without a revocation");
                }
                self.shared.audit("released", partition, None);
            }
        }
    }
}

/// A member of a Kafka consumer group.
pub struct KafkaMember {
    shared: Arc<Shared>,
    commits: std::sync::mpsc::Sender<CommitRequest>,
    consumer: Option<Arc<BaseConsumer<GroupContext>>>,
    deliveries: mpsc::Receiver<Delivery>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaMember")
            .field("group", &self.shared.group)
            .field("member", &self.shared.client_id)
            .finish_non_exhaustive()
    }
}

impl KafkaMember {
    /// Subscribes to `options.topics` as a member of `options.group`; `config` carries the
    /// cluster's address and any client properties.
    pub(super) fn join(mut config: ClientConfig, options: GroupOptions) -> Result<Self, LogError> {
        static MEMBERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let client_id = format!(
            "kinfold-{}-{}",
            std::process::id(),
            MEMBERS.fetch_add(1, Ordering::Relaxed)
        );
        let shared = Arc::new(Shared {
            group: options.group.clone(),
            client_id: client_id.clone(),
            owned: Mutex::default(),
            closing: AtomicBool::new(false),
        });
        let (sender, deliveries) = mpsc::channel(CHANNEL);
        let (commits, commit_requests) = std::sync::mpsc::channel();
        let context = GroupContext {
            shared: shared.clone(),
            options: options.clone(),
            deliveries: sender,
            pending: Mutex::default(),
            commits: Mutex::new(commit_requests),
        };
        let session_timeout = Duration::from_millis(
            config
                .get("session.timeout.ms")
                .and_then(|value| value.parse().ok())
                .unwrap_or(45_000),
        );
        config
            .set("group.id", &options.group)
            .set("client.id", &client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer<GroupContext> =
            config.create_with_context(context).map_err(kafka_error)?;
        let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(kafka_error)?;
        let consumer = Arc::new(consumer);
        let polled = consumer.clone();
        let batch = options.batch.max(1);
        let poller = std::thread::Builder::new()
            .name(format!("kafka-{}", options.group))
            .spawn(move || poll(&polled, batch, session_timeout))
            .map_err(kafka_error)?;
        Ok(Self {
            shared,
            commits,
            consumer: Some(consumer),
            deliveries,
            poller: Some(poller),
        })
    }

    /// Stops the polling thread and closes the consumer (its last revocation goes through
    /// without waiting for the stage), off the async runtime.
    fn close(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.shared.closing.store(true, Ordering::Release);
        let poller = self.poller.take();
        let consumer = self.consumer.take();
        if poller.is_none() && consumer.is_none() {
            return None;
        }
        let close = move || {
            if let Some(poller) = poller {
                let _ = poller.join();
            }
            drop(consumer);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Some(runtime.spawn_blocking(close)),
            Err(_) => {
                close();
                None
            }
        }
    }
}

/// Watches for a group that settled with this member owning nothing while nobody consumes,
/// and rejoins.
///
/// A broker can form a generation that nobody consumes in: tansu 0.6, the test broker, does
/// when the leader's session expires between JoinGroup and SyncGroup (a member killed while
/// joining). The first follower's SyncGroup then completes the generation with an empty
/// assignment for every member, and the group stays stable, heartbeats succeeding, while its
/// partitions lag forever. An empty assignment is legitimate (more members than partitions),
/// and the coordinator cannot be asked who holds what (tansu answers DescribeGroups without
/// assignments), so the member judges by progress: when it has owned nothing for two session
/// timeouts, some subscribed partition has records past its committed offset, and no committed
/// offset moved in all that time, nobody is consuming, and the member leaves and rejoins,
/// which starts a new generation. A group whose owners are all stuck (say, retrying against
/// a downstream outage) also looks like this; a rejoin then costs one rebalance per window.
struct Watchdog {
    window: Duration,
    /// Since when this member has owned nothing (or was last checked), and the committed
    /// offsets then.
    idle: Option<(Instant, Option<Positions>)>,
}

/// Committed offsets (-1: none) by topic and partition.
type Positions = BTreeMap<(String, i32), i64>;

impl Watchdog {
    fn new(session_timeout: Duration) -> Self {
        Self {
            window: session_timeout * 2,
            idle: None,
        }
    }

    fn check(&mut self, consumer: &BaseConsumer<GroupContext>) {
        let context = consumer.context();
        if !context.shared.owned().is_empty() {
            self.idle = None;
            return;
        }
        let now = Instant::now();
        let before = match &mut self.idle {
            None => {
                self.idle = Some((now, committed_positions(consumer).ok()));
                return;
            }
            Some((since, _)) if now.duration_since(*since) < self.window => return,
            Some((_, before)) => before.take(),
        };
        let current = committed_positions(consumer).ok();
        let verdict = match (&before, &current) {
            (Some(before), Some(current)) => {
                nobody_consumes(before, current, |topic, partition| {
                    consumer
                        .fetch_watermarks(topic, partition, TIMEOUT)
                        .map_err(kafka_error)
                })
            }
            _ => Ok(None),
        };
        // Look again one window later, whatever the answer.
        self.idle = Some((now, current));
        match verdict {
            Ok(Some(reason)) => {
                tracing::warn!(
                    group = %context.shared.group,
                    member = %context.shared.client_id,
                    %reason,
                    "this member owns nothing and nobody consumes; leaving and rejoining the group"
                );
                metrics::counter!(GROUP_REJOINS, "group" => context.shared.group.clone())
                    .increment(1);
                let topics: Vec<&str> = context.options.topics.iter().map(String::as_str).collect();
                consumer.unsubscribe();
                if let Err(error) = consumer.subscribe(&topics) {
                    context.fail(consumer, format!("cannot rejoin the group: {error}"));
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(group = %context.shared.group, %error, "cannot judge the group's progress");
            }
        }
    }
}

/// The group's committed offsets for every partition of the subscribed topics.
fn committed_positions(consumer: &BaseConsumer<GroupContext>) -> Result<Positions, LogError> {
    let mut partitions = TopicPartitionList::new();
    for topic in &consumer.context().options.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(kafka_error)?;
        for topic in metadata.topics() {
            for partition in topic.partitions() {
                partitions.add_partition(topic.name(), partition.id());
            }
        }
    }
    let committed = consumer
        .committed_offsets(partitions, TIMEOUT)
        .map_err(kafka_error)?;
    Ok(committed
        .elements()
        .iter()
        .map(|element| {
            let offset = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => -1,
            };
            ((element.topic().to_owned(), element.partition()), offset)
        })
        .collect())
}

/// Why nobody seems to consume, if so: no committed offset moved between `before` and `now`
/// while some partition has records past its committed offset (`watermarks` gives a
/// partition's low and high watermarks).
fn nobody_consumes(
    before: &Positions,
    now: &Positions,
    mut watermarks: impl FnMut(&str, i32) -> Result<(i64, i64), LogError>,
) -> Result<Option<String>, LogError> {
    if now.is_empty() || before != now {
        return Ok(None);
    }
    let mut lagging = 0;
    let mut behind = 0;
    for ((topic, partition), committed) in now {
        let (low, high) = watermarks(topic, *partition)?;
        let position = (*committed).max(low);
        if position < high {
            lagging += 1;
            behind += high - position;
        }
    }
    Ok((lagging > 0)
        .then(|| format!("{lagging} partition(s) {behind} record(s) behind and no commit moved")))
}

/// Consumer errors (a broker down, a connection refused) come back on every poll while they
/// last; they are logged at most once per `ERROR_LOG_EVERY`, with how many were left out.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    left_out: u64,
}

const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

impl ErrorLog {
    fn report(&mut self, group: &str, error: &rdkafka::error::KafkaError) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < ERROR_LOG_EVERY)
        {
            self.left_out += 1;
            return;
        }
        tracing::warn!(
            group,
            %error,
            errors_left_out = self.left_out,
            "kafka consumer error (at most one logged per {ERROR_LOG_EVERY:?})"
        );
        self.last = Some(now);
        self.left_out = 0;
    }
}

/// The polling thread: hands records over in batches; rebalances run inside `poll`.
fn poll(consumer: &BaseConsumer<GroupContext>, batch: usize, session_timeout: Duration) {
    let context = consumer.context();
    let mut watchdog = Watchdog::new(session_timeout);
    let mut errors = ErrorLog::default();
    while !context.shared.closing() {
        watchdog.check(consumer);
        context.serve_commits(consumer);
        let wait = if context.buffered() > 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                context.buffer(&message);
                if context.buffered() >= batch {
                    context.flush(consumer);
                }
            }
            Some(Err(error)) => errors.report(&context.shared.group, &error),
            None => context.flush(consumer),
        }
    }
}

impl Drop for KafkaMember {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait::async_trait]
impl GroupMember for KafkaMember {
    async fn next(&mut self, wait: Duration) -> Result<GroupEvent, LogError> {
        match tokio::time::timeout(wait, self.deliveries.recv()).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => Err(LogError::Closed),
            Err(_) => Ok(GroupEvent::Idle),
        }
    }

    async fn commit(
        &self,
        positions: &[(TopicPartition, u64)],
    ) -> Result<Vec<TopicPartition>, LogError> {
        if self.consumer.is_none() {
            return Err(LogError::Closed);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.commits
            .send(CommitRequest {
                positions: positions.to_vec(),
                reply,
            })
            .map_err(|_| LogError::Closed)?;
        match tokio::time::timeout(COMMIT_TIMEOUT, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(LogError::Closed),
            Err(_) => Err(LogError::Storage(format!(
                "kafka: no commit within {COMMIT_TIMEOUT:?}"
            ))),
        }
    }

    fn owned(&self) -> Vec<TopicPartition> {
        self.shared.owned().iter().cloned().collect()
    }

    async fn leave(mut self: Box<Self>) -> Result<(), LogError> {
        if let Some(closing) = self.close() {
            closing.await.map_err(kafka_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{LogError, Positions, nobody_consumes};

    fn positions(offsets: &[i64]) -> Positions {
        offsets
            .iter()
            .enumerate()
            .map(|(partition, offset)| (("t".to_owned(), partition as i32), *offset))
            .collect()
    }

    fn watermarks(high: &'static [i64]) -> impl FnMut(&str, i32) -> Result<(i64, i64), LogError> {
        move |_, partition| Ok((0, high[partition as usize]))
    }

    #[test]
    fn nobody_consumes_when_lag_stands_still() {
        // Never committed, records waiting: stuck.
        let none = positions(&[-1, -1]);
        let verdict = nobody_consumes(&none, &none, watermarks(&[100, 0])).expect("judged");
        assert_eq!(
            verdict.as_deref(),
            Some("1 partition(s) 100 record(s) behind and no commit moved")
        );
        // Committed part of the way, nothing moving.
        let part = positions(&[40, 7]);
        assert!(
            nobody_consumes(&part, &part, watermarks(&[100, 7]))
                .expect("judged")
                .is_some()
        );
    }

    #[test]
    fn somebody_consumes_when_a_commit_moves_or_nothing_waits() {
        // A commit moved: another member is at work.
        assert_eq!(
            nobody_consumes(
                &positions(&[40, 7]),
                &positions(&[41, 7]),
                watermarks(&[100, 7])
            )
            .expect("judged"),
            None
        );
        // Everything consumed: an idle group, nothing to do.
        let done = positions(&[100, 7]);
        assert_eq!(
            nobody_consumes(&done, &done, watermarks(&[100, 7])).expect("judged"),
            None
        );
        // Records expired below the committed offset do not count as lag.
        let none = positions(&[-1]);
        assert_eq!(
            nobody_consumes(&none, &none, |_, _| Ok((50, 50))).expect("judged"),
            None
        );
    }
}

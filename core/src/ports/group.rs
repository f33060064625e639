//! Consumer-group membership on the event log.
//!
//! A stage reads its source topics as one member of a consumer group. The member is told which
//! partitions it owns and from which offset each starts ([`GroupEvent::Assigned`]), receives
//! their records in offset order, and is warned before a partition moves to another member
//! ([`GroupEvent::Revoking`]): until it answers (or a deadline passes) the partition is still
//! its own and it may commit for it; afterwards [`GroupMember::commit`] refuses that partition.
//!
//! Kafka's group protocol backs this on the Kafka log. The embedded log has no group
//! coordinator: a process is the only member and owns every partition ([`SoleMember`]).

use super::log::{EventLog, LogError, LogRecord, TopicPartition};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Positions a stage keeps with its own data, read when a partition is assigned so that the
/// stage resumes where its data says rather than where the group's commit says.
pub trait StoredPositions: Send + Sync + fmt::Debug {
    /// The offset of the next record to process in `partition`, if the stage stored one.
    fn position(&self, partition: &TopicPartition) -> Option<u64>;
}

/// How to join a group.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    pub group: String,
    pub topics: Vec<String>,
    /// Most records delivered in one [`GroupEvent::Records`].
    pub batch: usize,
    /// How long a revocation waits for the stage to finish in-flight work and commit.
    pub drain_timeout: Duration,
    /// Where the stage keeps positions with its data, if it does.
    pub stored_positions: Option<Arc<dyn StoredPositions>>,
}

impl GroupOptions {
    /// Options with the defaults: batches of 500, a 10 s drain, no stored positions.
    pub fn new(group: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group: group.into(),
            topics,
            batch: 500,
            drain_timeout: Duration::from_secs(10),
            stored_positions: None,
        }
    }
}

/// Sent back when a revocation is handled; dropping it counts as handled.
#[derive(Debug)]
pub struct RevokeDone(Option<std::sync::mpsc::SyncSender<()>>);

impl RevokeDone {
    /// A pair: the token to hand to the stage, and the receiver the member waits on.
    pub fn channel() -> (Self, std::sync::mpsc::Receiver<()>) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        (Self(Some(sender)), receiver)
    }

    /// A token nobody waits for.
    pub fn unawaited() -> Self {
        Self(None)
    }

    /// Tells the member that the stage has committed and dropped the partitions' state.
    pub fn done(mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.try_send(());
        }
    }
}

impl Drop for RevokeDone {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.try_send(());
        }
    }
}

/// What a group member is told.
#[derive(Debug)]
pub enum GroupEvent {
    /// These partitions are now owned; reading each starts at the given offset.
    Assigned(Vec<(TopicPartition, u64)>),
    /// Records of one owned partition, in offset order, following on from what came before.
    Records {
        partition: TopicPartition,
        records: Vec<LogRecord>,
    },
    /// These partitions are about to move: finish or abandon their work, commit what is
    /// contiguous, drop their state, then call `done`. They stay owned until then, or until
    /// the drain deadline.
    Revoking {
        partitions: Vec<TopicPartition>,
        done: RevokeDone,
    },
    /// These partitions were taken without warning (the member was thought dead); nothing may
    /// be committed for them.
    Lost(Vec<TopicPartition>),
    /// Nothing arrived within the wait.
    Idle,
}

/// One member of a consumer group.
#[async_trait::async_trait]
pub trait GroupMember: Send + fmt::Debug {
    /// The next event, or [`GroupEvent::Idle`] after `wait` without one. Cancel-safe: a call
    /// dropped before it returns loses nothing.
    async fn next(&mut self, wait: Duration) -> Result<GroupEvent, LogError>;

    /// Commits `positions` (the offset of the next record to process) of partitions owned at
    /// this moment, and returns the partitions it refused because they are not owned.
    async fn commit(
        &self,
        positions: &[(TopicPartition, u64)],
    ) -> Result<Vec<TopicPartition>, LogError>;

    /// The partitions owned now.
    fn owned(&self) -> Vec<TopicPartition>;

    /// Leaves the group; the partitions go to the other members at once.
    async fn leave(self: Box<Self>) -> Result<(), LogError>;
}

/// Joins `options.group` on `log`: through the backend's group coordinator when it has one,
/// otherwise as the sole member owning every partition.
pub async fn join_group(
    log: Arc<dyn EventLog>,
    options: GroupOptions,
) -> Result<Box<dyn GroupMember>, LogError> {
    match log.join_group(&options).await? {
        Some(member) => Ok(member),
        None => Ok(Box::new(SoleMember::new(log, options))),
    }
}

/// The only member of its group: owns every partition of its topics, reads them in turn.
#[derive(Debug)]
pub struct SoleMember {
    log: Arc<dyn EventLog>,
    options: GroupOptions,
    /// Each owned partition with the next offset to read; empty until assigned.
    cursors: Vec<(TopicPartition, u64)>,
    assigned: bool,
    turn: usize,
    /// The log's append counter, when it has one: an idle member waits on it rather than
    /// sleeping the whole wait.
    appended: Option<tokio::sync::watch::Receiver<u64>>,
}

impl SoleMember {
    pub fn new(log: Arc<dyn EventLog>, options: GroupOptions) -> Self {
        let appended = log.appended();
        Self {
            log,
            options,
            cursors: Vec::new(),
            assigned: false,
            turn: 0,
            appended,
        }
    }

    async fn start_of(&self, partition: &TopicPartition) -> Result<u64, LogError> {
        let stored = self
            .options
            .stored_positions
            .as_ref()
            .and_then(|stored| stored.position(partition));
        let committed = match stored {
            Some(position) => Some(position),
            None => {
                self.log
                    .committed(&self.options.group, &partition.topic, partition.partition)
                    .await?
            }
        };
        let (low, high) = self
            .log
            .watermarks(&partition.topic, partition.partition)
            .await?;
        Ok(committed.unwrap_or(low).clamp(low, high))
    }
}

#[async_trait::async_trait]
impl GroupMember for SoleMember {
    async fn next(&mut self, wait: Duration) -> Result<GroupEvent, LogError> {
        if !self.assigned {
            let mut cursors = Vec::new();
            for topic in &self.options.topics {
                for partition in 0..self.log.partitions(topic).await? {
                    let owned = TopicPartition {
                        topic: topic.clone(),
                        partition,
                    };
                    let start = self.start_of(&owned).await?;
                    cursors.push((owned, start));
                }
            }
            self.cursors = cursors.clone();
            self.assigned = true;
            return Ok(GroupEvent::Assigned(cursors));
        }
        // Marked seen before looking, so that an append landing after the look still wakes
        // the wait below.
        if let Some(appended) = &mut self.appended {
            appended.borrow_and_update();
        }
        for step in 0..self.cursors.len() {
            let index = (self.turn + step) % self.cursors.len();
            let (partition, next) = &self.cursors[index];
            let records = self
                .log
                .read(
                    &partition.topic,
                    partition.partition,
                    *next,
                    self.options.batch,
                )
                .await?;
            if let Some(last) = records.last() {
                let partition = partition.clone();
                self.cursors[index].1 = last.offset + 1;
                self.turn = index + 1;
                return Ok(GroupEvent::Records { partition, records });
            }
        }
        // Until the next append or the end of the wait; without a counter (or with one whose
        // log is gone) only the wait ends it.
        let appended = async {
            let woken = match &mut self.appended {
                Some(appended) => appended.changed().await.is_ok(),
                None => false,
            };
            if !woken {
                std::future::pending::<()>().await;
            }
        };
        let _ = tokio::time::timeout(wait, appended).await;
        Ok(GroupEvent::Idle)
    }

    async fn commit(
        &self,
        positions: &[(TopicPartition, u64)],
    ) -> Result<Vec<TopicPartition>, LogError> {
        let mut refused = Vec::new();
        for (partition, position) in positions {
            if !self.cursors.iter().any(|(owned, _)| owned == partition) {
                refused.push(partition.clone());
                continue;
            }
            self.log
                .commit(
                    &self.options.group,
                    &partition.topic,
                    partition.partition,
                    *position,
                )
                .await?;
        }
        Ok(refused)
    }

    fn owned(&self) -> Vec<TopicPartition> {
        self.cursors
            .iter()
            .map(|(partition, _)| partition.clone())
            .collect()
    }

    async fn leave(self: Box<Self>) -> Result<(), LogError> {
        Ok(())
    }
}

//! The stage loop under the group events a broker produces only by accident: a revocation
//! whose drain deadline passes with a batch still running, partitions lost without a
//! revocation, batches that fail and batches that finish out of order. A scripted group member
//! (fault injection: no broker can be told to do these on cue) delivers the events and records
//! every commit; the oracle is the processor's own record of what it finished: a commit never
//! passes the first offset not yet processed, and nothing is committed for a partition that
//! was not owned.

use bytes::Bytes;
use kinfold_core::ports::{
    EventLog, GroupEvent, GroupMember, GroupOptions, LogError, LogRecord, OutgoingRecord,
    RecordPosition, RevokeDone, TopicPartition, TopicSpec,
};
use kinfold_core::stage::{Processor, StageConfig, StageReport, StageStatus, run_stage};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

fn partition(number: u32) -> TopicPartition {
    TopicPartition {
        topic: "src".into(),
        partition: number,
    }
}

/// Records `from..to` of partition `p`, each with `value`.
fn records(p: u32, from: u64, to: u64, value: &str) -> Vec<LogRecord> {
    (from..to)
        .map(|offset| LogRecord {
            partition: p,
            offset,
            key: None,
            value: Bytes::from(value.to_owned()),
            headers: Vec::new(),
            timestamp_millis: 0,
        })
        .collect()
}

/// What the processor finished, and the attempts it saw cut short.
#[derive(Debug, Default)]
struct Book {
    /// Every offset processed to the end, per partition, in the order finished.
    done: Mutex<HashMap<TopicPartition, Vec<u64>>>,
    aborted: Mutex<u32>,
    attempts: Mutex<HashMap<(TopicPartition, u64), u32>>,
}

impl Book {
    /// The first offset of `partition` not processed to the end.
    fn contiguous(&self, partition: &TopicPartition) -> u64 {
        let done = self.done.lock().expect("lock");
        let offsets: BTreeSet<u64> = done
            .get(partition)
            .map(|offsets| offsets.iter().copied().collect())
            .unwrap_or_default();
        (0..)
            .find(|offset| !offsets.contains(offset))
            .expect("a gap")
    }

    fn done(&self, partition: &TopicPartition) -> Vec<u64> {
        let mut done = self
            .done
            .lock()
            .expect("lock")
            .get(partition)
            .cloned()
            .unwrap_or_default();
        done.sort_unstable();
        done
    }
}

/// Processes records by their value: `fast` at once; `slow` once `open` turns true; `fail-N`
/// fails the batch's first N attempts.
#[derive(Debug)]
struct Gate {
    book: Arc<Book>,
    open: watch::Receiver<bool>,
}

/// Counts an attempt as aborted when it is dropped before it finished.
struct Attempt<'a> {
    book: &'a Book,
    finished: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.finished {
            *self.book.aborted.lock().expect("lock") += 1;
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

impl Processor for Gate {
    type Tally = u64;
    type Error = Injected;

    async fn process(
        &self,
        partition: &TopicPartition,
        records: &[LogRecord],
    ) -> Result<u64, Injected> {
        let mut attempt = Attempt {
            book: &self.book,
            finished: false,
        };
        let first = records.first().expect("a record");
        let value = String::from_utf8_lossy(&first.value).into_owned();
        if value == "slow" {
            let mut open = self.open.clone();
            open.wait_for(|open| *open).await.expect("gate");
        }
        if let Some(failures) = value.strip_prefix("fail-") {
            let failures: u32 = failures.parse().expect("a count");
            let mut attempts = self.book.attempts.lock().expect("lock");
            let seen = attempts
                .entry((partition.clone(), first.offset))
                .or_default();
            *seen += 1;
            if *seen <= failures {
                attempt.finished = true;
                return Err(Injected);
            }
        }
        self.book
            .done
            .lock()
            .expect("lock")
            .entry(partition.clone())
            .or_default()
            .extend(records.iter().map(|record| record.offset));
        attempt.finished = true;
        Ok(records.len() as u64)
    }
}

/// A commit as the member saw it, with the processor's contiguous prefix at that moment.
#[derive(Debug, Clone)]
struct Commit {
    partition: TopicPartition,
    position: u64,
    contiguous: u64,
}

/// The group member the test drives: events come from the test, commits are recorded and
/// refused for partitions the test has not marked owned.
#[derive(Debug)]
struct Scripted {
    events: mpsc::UnboundedReceiver<GroupEvent>,
    owned: Arc<Mutex<HashSet<TopicPartition>>>,
    commits: Arc<Mutex<Vec<Commit>>>,
    book: Arc<Book>,
}

#[async_trait::async_trait]
impl GroupMember for Scripted {
    async fn next(&mut self, wait: Duration) -> Result<GroupEvent, LogError> {
        match tokio::time::timeout(wait, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(LogError::Closed),
            Err(_) => Ok(GroupEvent::Idle),
        }
    }

    async fn commit(
        &self,
        positions: &[(TopicPartition, u64)],
    ) -> Result<Vec<TopicPartition>, LogError> {
        let owned = self.owned.lock().expect("lock");
        let mut refused = Vec::new();
        for (partition, position) in positions {
            if !owned.contains(partition) {
                refused.push(partition.clone());
                continue;
            }
            self.commits.lock().expect("lock").push(Commit {
                partition: partition.clone(),
                position: *position,
                contiguous: self.book.contiguous(partition),
            });
        }
        Ok(refused)
    }

    fn owned(&self) -> Vec<TopicPartition> {
        self.owned.lock().expect("lock").iter().cloned().collect()
    }

    async fn leave(self: Box<Self>) -> Result<(), LogError> {
        Ok(())
    }
}

/// A log whose only part the stage uses here is its group coordinator (the scripted member)
/// and its watermarks (for the lag gauge).
#[derive(Debug)]
struct ScriptedLog {
    member: Mutex<Option<Scripted>>,
}

#[async_trait::async_trait]
impl EventLog for ScriptedLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<TopicSpec, LogError> {
        Ok(TopicSpec {
            name: topic.to_owned(),
            partitions,
        })
    }
    async fn partitions(&self, _: &str) -> Result<u32, LogError> {
        Ok(2)
    }
    async fn append(
        &self,
        _: &str,
        _: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError> {
        Err(LogError::Storage("not used".into()))
    }
    async fn read(&self, _: &str, _: u32, _: u64, _: usize) -> Result<Vec<LogRecord>, LogError> {
        Err(LogError::Storage("not used".into()))
    }
    async fn watermarks(&self, _: &str, _: u32) -> Result<(u64, u64), LogError> {
        Ok((0, 0))
    }
    async fn commit(&self, _: &str, _: &str, _: u32, _: u64) -> Result<(), LogError> {
        Err(LogError::Storage("not used".into()))
    }
    async fn committed(&self, _: &str, _: &str, _: u32) -> Result<Option<u64>, LogError> {
        Ok(None)
    }
    async fn join_group(&self, _: &GroupOptions) -> Result<Option<Box<dyn GroupMember>>, LogError> {
        let member = self.member.lock().expect("lock").take().expect("one join");
        Ok(Some(Box::new(member)))
    }
}

struct Harness {
    events: mpsc::UnboundedSender<GroupEvent>,
    owned: Arc<Mutex<HashSet<TopicPartition>>>,
    commits: Arc<Mutex<Vec<Commit>>>,
    book: Arc<Book>,
    open: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    stage: tokio::task::JoinHandle<StageReport<u64>>,
}

impl Harness {
    fn start(drain_timeout: Duration) -> Self {
        let (events, receiver) = mpsc::unbounded_channel();
        let owned = Arc::new(Mutex::new(HashSet::new()));
        let commits = Arc::new(Mutex::new(Vec::new()));
        let book = Arc::new(Book::default());
        let (open, gate) = watch::channel(false);
        let log = Arc::new(ScriptedLog {
            member: Mutex::new(Some(Scripted {
                events: receiver,
                owned: owned.clone(),
                commits: commits.clone(),
                book: book.clone(),
            })),
        });
        let mut options = GroupOptions::new("g", vec!["src".into()]);
        options.drain_timeout = drain_timeout;
        let mut config = StageConfig::new("test");
        config.commit_interval = Duration::from_millis(20);
        config.idle = Duration::from_millis(10);
        config.max_backoff = Duration::from_millis(100);
        let (stop, shutdown) = watch::channel(false);
        let processor = Arc::new(Gate {
            book: book.clone(),
            open: gate,
        });
        let stage = tokio::spawn(async move {
            run_stage(
                log,
                processor,
                options,
                config,
                Arc::new(StageStatus::default()),
                shutdown,
            )
            .await
            .expect("the stage runs")
        });
        Self {
            events,
            owned,
            commits,
            book,
            open,
            stop,
            stage,
        }
    }

    fn assign(&self, partitions: &[(u32, u64)]) {
        let mut owned = self.owned.lock().expect("lock");
        let assigned = partitions
            .iter()
            .map(|(number, start)| {
                owned.insert(partition(*number));
                (partition(*number), *start)
            })
            .collect();
        self.events
            .send(GroupEvent::Assigned(assigned))
            .expect("send");
    }

    fn deliver(&self, p: u32, records: Vec<LogRecord>) {
        self.events
            .send(GroupEvent::Records {
                partition: partition(p),
                records,
            })
            .expect("send");
    }

    /// Revokes `p` as a broker does: ownership ends once the stage says it is done.
    async fn revoke(&self, p: u32) -> Duration {
        let (done, handled) = RevokeDone::channel();
        let started = Instant::now();
        self.events
            .send(GroupEvent::Revoking {
                partitions: vec![partition(p)],
                done,
            })
            .expect("send");
        tokio::task::spawn_blocking(move || handled.recv_timeout(Duration::from_secs(10)))
            .await
            .expect("joined")
            .expect("the stage answers the revocation");
        self.owned.lock().expect("lock").remove(&partition(p));
        started.elapsed()
    }

    fn commits(&self, p: u32) -> Vec<Commit> {
        self.commits
            .lock()
            .expect("lock")
            .iter()
            .filter(|commit| commit.partition == partition(p))
            .cloned()
            .collect()
    }

    async fn stop(self) -> (StageReport<u64>, Vec<Commit>, Arc<Book>) {
        self.stop.send(true).expect("stop");
        let report = self.stage.await.expect("stage task");
        let commits = self.commits.lock().expect("lock").clone();
        for commit in &commits {
            assert!(
                commit.position <= commit.contiguous,
                "committed past unprocessed work: {commit:?}"
            );
        }
        (report, commits, self.book)
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_past_its_drain_deadline_abandons_the_batch_and_it_is_redone() {
    let harness = Harness::start(Duration::from_millis(300));
    harness.assign(&[(0, 0)]);
    harness.deliver(0, records(0, 0, 5, "fast"));
    harness.deliver(0, records(0, 5, 10, "slow"));
    wait_for("the fast batch", || {
        harness.book.done(&partition(0)).len() == 5
    })
    .await;

    let took = harness.revoke(0).await;
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "the revocation waited for the drain deadline, no longer: {took:?}"
    );
    // Aborting is asynchronous: the batch's future is dropped when the runtime gets to it.
    wait_for("the slow batch abandoned", || {
        *harness.book.aborted.lock().expect("lock") == 1
    })
    .await;
    let positions: Vec<u64> = harness.commits(0).iter().map(|c| c.position).collect();
    assert_eq!(
        positions.last(),
        Some(&5),
        "committed what was finished: {positions:?}"
    );

    // The partition comes back from the committed position; the abandoned records are redone.
    harness.open.send(true).expect("open");
    harness.assign(&[(0, 5)]);
    harness.deliver(0, records(0, 5, 10, "slow"));
    wait_for("the redone batch", || {
        harness.book.done(&partition(0)).len() == 10
    })
    .await;
    let (report, commits, book) = harness.stop().await;
    assert_eq!(
        book.done(&partition(0)),
        (0..10).collect::<Vec<_>>(),
        "each record finished once"
    );
    assert_eq!(commits.last().map(|c| c.position), Some(10));
    assert_eq!(report.refused_commits, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_partitions_are_dropped_without_a_commit() {
    let harness = Harness::start(Duration::from_secs(5));
    harness.assign(&[(0, 0), (1, 0)]);
    harness.deliver(0, records(0, 0, 5, "slow"));
    harness.deliver(1, records(1, 0, 5, "fast"));
    wait_for("partition 1 committed", || {
        harness.commits(1).iter().any(|commit| commit.position == 5)
    })
    .await;

    // The broker took partition 0 without a revocation (the member looked dead).
    harness.owned.lock().expect("lock").remove(&partition(0));
    harness
        .events
        .send(GroupEvent::Lost(vec![partition(0)]))
        .expect("send");
    wait_for("the lost partition's batch abandoned", || {
        *harness.book.aborted.lock().expect("lock") == 1
    })
    .await;
    // Records still arriving for it are not processed, even once they could be.
    harness.open.send(true).expect("open");
    harness.deliver(0, records(0, 5, 10, "fast"));
    harness.deliver(1, records(1, 5, 10, "fast"));
    wait_for("partition 1 goes on", || {
        harness.book.done(&partition(1)).len() == 10
    })
    .await;
    let (report, commits, book) = harness.stop().await;
    assert!(
        book.done(&partition(0)).is_empty(),
        "nothing of the lost partition processed"
    );
    assert!(
        commits
            .iter()
            .all(|commit| commit.partition != partition(0)),
        "no commit for the lost partition: {commits:?}"
    );
    assert_eq!(commits.last().map(|c| c.position), Some(10));
    assert_eq!(report.refused_commits, 0, "the stage did not even try");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batches_are_retried_and_commits_wait_for_the_gap_to_close() {
    let harness = Harness::start(Duration::from_secs(5));
    harness.assign(&[(0, 0)]);
    // The first batch fails twice; the second finishes first.
    harness.deliver(0, records(0, 0, 5, "fail-2"));
    harness.deliver(0, records(0, 5, 10, "fast"));
    wait_for("both batches", || {
        harness.book.done(&partition(0)).len() == 10
    })
    .await;
    wait_for("the commit of both", || {
        harness
            .commits(0)
            .iter()
            .any(|commit| commit.position == 10)
    })
    .await;
    let (report, commits, book) = harness.stop().await;
    assert_eq!(report.retries, 2);
    assert_eq!(book.done(&partition(0)), (0..10).collect::<Vec<_>>());
    // Nothing could be committed until the first batch was done, then all of it at once.
    let positions: Vec<u64> = commits.iter().map(|commit| commit.position).collect();
    assert_eq!(positions, vec![10]);
}

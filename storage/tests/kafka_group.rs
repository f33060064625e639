//! Stages as members of a Kafka consumer group, against a real broker (tansu): partitions move
//! between members while records flow, and every record is processed exactly once across all
//! graceful hand-overs, with no commit for a partition a member did not own. Needs
//! `--features kafka`.
#![cfg(feature = "kafka")]

use bytes::Bytes;
use kinfold_core::ports::{
    EventLog, GroupOptions, LogError, LogRecord, OutgoingRecord, TopicPartition,
};
use kinfold_core::stage::{Processor, StageConfig, StageReport, StageStatus, run_stage};
use kinfold_storage::kafka::KafkaLog;
use kinfold_tests::Broker;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PARTITIONS: u32 = 4;

/// Remembers every record it processed, slowly enough that batches are in flight when a
/// partition moves.
#[derive(Debug, Default)]
struct Recorder {
    processed: Mutex<Vec<(TopicPartition, u64)>>,
}

impl Processor for Recorder {
    type Tally = u64;
    type Error = LogError;

    async fn process(
        &self,
        partition: &TopicPartition,
        records: &[LogRecord],
    ) -> Result<u64, LogError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut processed = self.processed.lock().expect("lock");
        for record in records {
            assert_eq!(
                record.value,
                Bytes::from(format!(
                    "v-{}",
                    record
                        .key
                        .as_ref()
                        .map_or(String::new(), |key| String::from_utf8_lossy(key)
                            .into_owned())
                ))
            );
            processed.push((partition.clone(), record.offset));
        }
        Ok(records.len() as u64)
    }
}

struct Member {
    stop: watch::Sender<bool>,
    status: Arc<StageStatus>,
    task: JoinHandle<StageReport<u64>>,
}

fn start(log: &Arc<KafkaLog>, group: &str, topic: &str, recorder: &Arc<Recorder>) -> Member {
    let (stop, shutdown) = watch::channel(false);
    let status = Arc::new(StageStatus::default());
    let mut options = GroupOptions::new(group, vec![topic.to_owned()]);
    options.batch = 50;
    options.drain_timeout = Duration::from_secs(5);
    let mut config = StageConfig::new("test");
    // Commits only on hand-over and shutdown: a hand-over that does not commit what it
    // finished shows up as records processed twice.
    config.commit_interval = Duration::from_secs(600);
    let task = tokio::spawn(run_stage(
        log.clone() as Arc<dyn EventLog>,
        recorder.clone(),
        options,
        config,
        status.clone(),
        shutdown,
    ));
    Member {
        stop,
        status,
        task: tokio::spawn(async move { task.await.expect("stage task").expect("stage ran") }),
    }
}

impl Member {
    async fn stop(self) -> StageReport<u64> {
        self.stop.send(true).expect("stop");
        self.task.await.expect("member")
    }
}

async fn produce(log: &KafkaLog, topic: &str, from: u64, count: u64) {
    let records = (from..from + count)
        .map(|serial| OutgoingRecord {
            key: Some(Bytes::from(serial.to_string())),
            value: Bytes::from(format!("v-{serial}")),
            ..OutgoingRecord::default()
        })
        .collect();
    log.append(topic, records).await.expect("produce");
}

/// Waits until `check` holds, or fails after 60 s saying `what`.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn members_share_partitions_and_lose_nothing(strategy: &str) {
    let broker = Broker::start().expect("tansu starts");
    let log = Arc::new(
        KafkaLog::connect(&format!(
            "{}?session.timeout.ms=6000&heartbeat.interval.ms=1000&partition.assignment.strategy={strategy}",
            broker.bootstrap
        ))
        .expect("connects"),
    );
    let topic = format!("group-src-{strategy}");
    let group = format!("group-{strategy}");
    log.ensure_topic(&topic, PARTITIONS).await.expect("topic");
    let recorder = Arc::new(Recorder::default());
    // Records keep arriving all along, so batches are in flight at every hand-over.
    let (stop_producing, producing) = watch::channel(false);
    let producer = tokio::spawn({
        let log = log.clone();
        let topic = topic.clone();
        async move {
            let mut produced = 0;
            while !*producing.borrow() {
                produce(&log, &topic, produced, 100).await;
                produced += 100;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            produced
        }
    });

    let mut reports = Vec::new();
    let mut a = start(&log, &group, &topic, &recorder);
    wait_for("the first member to own every partition", || {
        a.status.positions().len() == PARTITIONS as usize
    })
    .await;
    for round in 0..3 {
        // A second member joins: the partitions split.
        let b = start(&log, &group, &topic, &recorder);
        wait_for("the partitions to split between two members", || {
            let (on_a, on_b) = (a.status.positions().len(), b.status.positions().len());
            on_a > 0 && on_b > 0 && on_a + on_b == PARTITIONS as usize
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The older member leaves: the other one takes everything.
        reports.push(a.stop().await);
        wait_for("the remaining member to own every partition", || {
            b.status.positions().len() == PARTITIONS as usize
        })
        .await;
        eprintln!(
            "round {round}: {} records processed so far",
            recorder.processed.lock().expect("lock").len()
        );
        a = b;
    }
    stop_producing.send(true).expect("stop producing");
    let produced = producer.await.expect("producer");

    // Caught up: every partition committed to its end.
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        ends.insert(
            partition,
            log.watermarks(&topic, partition)
                .await
                .expect("watermarks")
                .1,
        );
    }
    assert_eq!(ends.values().sum::<u64>(), produced);
    wait_for("the last member to process every record", || {
        recorder.processed.lock().expect("lock").len() as u64 >= produced
    })
    .await;
    reports.push(a.stop().await);
    for partition in 0..PARTITIONS {
        assert_eq!(
            log.committed(&group, &topic, partition)
                .await
                .expect("committed"),
            Some(ends[&partition]),
            "the group's position of partition {partition}"
        );
    }

    // Every record processed, none twice: each hand-over committed before letting go.
    let mut seen: BTreeMap<(u32, u64), u32> = BTreeMap::new();
    for (partition, offset) in recorder.processed.lock().expect("lock").iter() {
        *seen.entry((partition.partition, *offset)).or_default() += 1;
    }
    for (partition, end) in &ends {
        for offset in 0..*end {
            assert_eq!(
                seen.get(&(*partition, offset)),
                Some(&1),
                "record {partition}@{offset}"
            );
        }
    }
    assert_eq!(seen.len() as u64, produced);
    assert!(
        reports.iter().all(|report| report.refused_commits == 0),
        "{reports:?}"
    );
    let rebalances: u64 = reports.iter().map(|report| report.rebalances).sum();
    assert!(rebalances >= 6, "{reports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eager_rebalances_hand_partitions_over_without_loss_or_repeat() {
    members_share_partitions_and_lose_nothing("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooperative_rebalances_hand_partitions_over_without_loss_or_repeat() {
    members_share_partitions_and_lose_nothing("cooperative-sticky").await;
}

/// Joins `group` over the raw protocol (JoinGroup v0, Kafka's wire format written out here)
/// as a member subscribed to `topic`, and then says nothing more: a process that died right
/// after it joined. Returns when the broker has answered the join.
fn join_and_die(bootstrap: &str, group: &str, topic: &str) {
    use std::io::{Read, Write};
    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as i16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let mut socket = std::net::TcpStream::connect(bootstrap).expect("connects");
    let mut member = String::new();
    for correlation in 1..=2i32 {
        let mut request = Vec::new();
        request.extend_from_slice(&11i16.to_be_bytes()); // JoinGroup
        request.extend_from_slice(&0i16.to_be_bytes()); // version 0
        request.extend_from_slice(&correlation.to_be_bytes());
        string(&mut request, "dead-member");
        string(&mut request, group);
        request.extend_from_slice(&6_000i32.to_be_bytes()); // session timeout
        string(&mut request, &member);
        string(&mut request, "consumer");
        request.extend_from_slice(&1i32.to_be_bytes()); // one protocol
        string(&mut request, "range");
        let mut subscription = Vec::new();
        subscription.extend_from_slice(&0i16.to_be_bytes());
        subscription.extend_from_slice(&1i32.to_be_bytes());
        string(&mut subscription, topic);
        subscription.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
        request.extend_from_slice(&(subscription.len() as i32).to_be_bytes());
        request.extend_from_slice(&subscription);
        socket
            .write_all(&(request.len() as i32).to_be_bytes())
            .expect("send");
        socket.write_all(&request).expect("send");
        let mut size = [0; 4];
        socket.read_exact(&mut size).expect("answer");
        let mut answer = vec![0; i32::from_be_bytes(size) as usize];
        socket.read_exact(&mut answer).expect("answer");
        let error = i16::from_be_bytes([answer[4], answer[5]]);
        // After the generation: protocol name, leader, then this member's id.
        let mut at = 10;
        let mut strings = Vec::new();
        for _ in 0..3 {
            let length = i16::from_be_bytes([answer[at], answer[at + 1]]).max(0) as usize;
            strings.push(String::from_utf8_lossy(&answer[at + 2..at + 2 + length]).into_owned());
            at += 2 + length;
        }
        match error {
            // MEMBER_ID_REQUIRED: join again with the id the broker gave.
            79 => member = strings.pop().expect("member id"),
            0 => {
                assert_eq!(
                    strings[1], strings[2],
                    "the dead member leads its generation"
                );
                return;
            }
            other => panic!("JoinGroup error {other}"),
        }
    }
    panic!("no generation joined");
}

/// A member that joins while the group's leader has just died can end up in a generation in
/// which nobody owns anything: tansu 0.6 completes it with the first follower's SyncGroup once
/// the leader's session has expired, empty assignments for all, and keeps it stable. The
/// member notices it owns nothing where it should own something, rejoins, and gets every
/// partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_left_with_nothing_by_a_broken_generation_rejoins_and_consumes() {
    let broker = Broker::start().expect("tansu starts");
    let log = Arc::new(
        KafkaLog::connect(&format!(
            "{}?session.timeout.ms=6000&heartbeat.interval.ms=1000",
            broker.bootstrap
        ))
        .expect("connects"),
    );
    let (topic, group) = ("orphaned-src", "orphaned");
    log.ensure_topic(topic, PARTITIONS).await.expect("topic");
    produce(&log, topic, 0, 400).await;
    let bootstrap = broker.bootstrap.clone();
    tokio::task::spawn_blocking(move || join_and_die(&bootstrap, group, topic))
        .await
        .expect("raw join");
    // The live member joins while the dead leader still looks alive, and syncs after its
    // session has expired.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let recorder = Arc::new(Recorder::default());
    let member = start(&log, group, topic, &recorder);
    wait_for("the live member to own every partition", || {
        member.status.positions().len() == PARTITIONS as usize
    })
    .await;
    wait_for("every record processed", || {
        recorder.processed.lock().expect("lock").len() == 400
    })
    .await;
    member.stop().await;
}

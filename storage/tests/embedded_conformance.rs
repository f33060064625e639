//! The log conformance suite on the embedded backend, plus its crash behaviour: a process
//! killed with SIGKILL keeps every append it had acknowledged.

use kinfold_storage::EmbeddedDatabase;
use kinfold_storage::conformance;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

macro_rules! conformance_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().expect("temp dir");
                let database = EmbeddedDatabase::open(dir.path()).expect("opens");
                conformance::run(stringify!($name), Arc::new(database.log()), "conf").await;
            }
        )+
        #[test]
        fn every_check_is_instantiated() {
            let instantiated = [$(stringify!($name)),+];
            assert_eq!(instantiated.len(), conformance::CHECKS.len());
            for check in conformance::CHECKS {
                assert!(instantiated.contains(&check), "{check} is not run on the embedded backend");
            }
        }
    };
}

conformance_tests!(
    topics_are_created_explicitly,
    appends_read_back_in_order,
    keys_pick_partitions_like_kafka,
    reads_stop_at_the_end,
    group_positions_are_kept_per_group,
    concurrent_appends_stay_dense,
    started_appends_land_in_the_order_started,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_data_is_there_after_reopening() {
    use kinfold_core::ports::{EventLog, OutgoingRecord};
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let database = EmbeddedDatabase::open(dir.path()).expect("opens");
        let log = database.log();
        log.ensure_topic("t", 2).await.expect("topic");
        let records = (0..10)
            .map(|i| OutgoingRecord {
                key: Some(format!("k{i}").into()),
                value: format!("v{i}").into(),
                ..OutgoingRecord::default()
            })
            .collect();
        log.append("t", records).await.expect("append");
        log.commit("g", "t", 0, 1).await.expect("commit");
    }
    let database = EmbeddedDatabase::open(dir.path()).expect("reopens");
    let log = database.log();
    assert_eq!(log.partitions("t").await.expect("topic survives"), 2);
    let mut values = Vec::new();
    for partition in 0..2 {
        for record in log.read("t", partition, 0, 100).await.expect("read") {
            values.push(String::from_utf8(record.value.to_vec()).expect("utf8"));
        }
    }
    values.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(values, expected);
    assert_eq!(
        log.committed("g", "t", 0).await.expect("committed"),
        Some(1)
    );
    // Appends continue after the recovered end.
    let next = log
        .append(
            "t",
            vec![OutgoingRecord {
                partition: Some(0),
                ..OutgoingRecord::default()
            }],
        )
        .await
        .expect("append");
    let (_, high) = log.watermarks("t", 0).await.expect("watermarks");
    assert_eq!(next[0].offset + 1, high);
}

macro_rules! kv_conformance_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().expect("temp dir");
                let database = EmbeddedDatabase::open(dir.path()).expect("opens");
                conformance::run_kv(stringify!($name), Arc::new(database.kv()), "conf").await;
            }
        )+
        #[test]
        fn every_kv_check_is_instantiated() {
            let instantiated = [$(stringify!($name)),+];
            for check in conformance::KV_CHECKS {
                assert!(instantiated.contains(&check), "{check} is not run on the embedded backend");
            }
        }
    };
}

kv_conformance_tests!(
    rows_are_addressed_by_partition_and_clustering_key,
    partitions_scan_in_clustering_order,
    batches_within_a_partition_apply_together,
);

const CHILD_ENV: &str = "KINFOLD_CRASH_CHILD_DIR";

/// Not a test of its own: the body of the child process that `acknowledged_appends_survive_sigkill`
/// starts (with `--ignored`) and kills. It appends forever and prints each acknowledged offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of acknowledged_appends_survive_sigkill"]
async fn crash_child_appends_until_killed() {
    use kinfold_core::ports::{EventLog, OutgoingRecord};
    use std::io::Write;
    let dir = std::env::var(CHILD_ENV).expect("run only as the crash test's child");
    let database = EmbeddedDatabase::open(std::path::Path::new(&dir)).expect("opens");
    let log = database.log();
    log.ensure_topic("crash", 1).await.expect("topic");
    let mut sequence = 0u64;
    loop {
        let records = (0..8)
            .map(|i| OutgoingRecord {
                value: format!("{}", sequence + i).into(),
                ..OutgoingRecord::default()
            })
            .collect();
        let positions = log.append("crash", records).await.expect("append");
        let mut stdout = std::io::stdout().lock();
        for (i, position) in positions.iter().enumerate() {
            writeln!(stdout, "ack {} {}", position.offset, sequence + i as u64).expect("stdout");
        }
        stdout.flush().expect("flush");
        sequence += 8;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill() {
    use kinfold_core::ports::EventLog;
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "crash_child_appends_until_killed",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts the child");
        let stdout = child.stdout.take().expect("stdout");
        let mut acknowledged = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            if let Some(rest) = line.strip_prefix("ack ") {
                let (offset, value) = rest.split_once(' ').expect("offset value");
                acknowledged.push((offset.parse::<u64>().expect("offset"), value.to_owned()));
                if acknowledged.len() >= 200 + round * 57 {
                    break;
                }
            }
        }
        let wanted = 200 + round * 57;
        assert_eq!(
            acknowledged.len(),
            wanted,
            "the child died before it was killed"
        );
        child.kill().expect("sigkill");
        child.wait().expect("reaped");
        let database = EmbeddedDatabase::open(dir.path()).expect("reopens after the kill");
        let log = database.log();
        let stored = log.read("crash", 0, 0, 1_000_000).await.expect("read");
        for (offset, value) in &acknowledged {
            let record = stored
                .get(*offset as usize)
                .unwrap_or_else(|| panic!("acknowledged offset {offset} lost in round {round}"));
            assert_eq!(
                &String::from_utf8(record.value.to_vec()).expect("utf8"),
                value
            );
        }
        drop(database);
    }
}

/// An idle member of a group on the embedded log is woken by an append instead of sleeping out
/// its wait: with a wait of ten minutes, records appended while it waits reach it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_member_wakes_on_append() {
    use kinfold_core::ports::group::{GroupEvent, GroupOptions, join_group};
    use kinfold_core::ports::{EventLog, OutgoingRecord};
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = EmbeddedDatabase::open(dir.path()).expect("opens");
    let log: Arc<dyn EventLog> = Arc::new(database.log());
    log.ensure_topic("wake", 2).await.expect("topic");
    let mut member = join_group(log.clone(), GroupOptions::new("g", vec!["wake".into()]))
        .await
        .expect("joins");
    let long = Duration::from_secs(600);
    assert!(matches!(
        member.next(long).await.expect("assigned"),
        GroupEvent::Assigned(_)
    ));
    let waiting = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match member.next(long).await.expect("next") {
                GroupEvent::Records { records, .. } => {
                    seen.extend(records.into_iter().map(|record| record.value));
                }
                GroupEvent::Idle => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        seen
    });
    // The member is waiting by now; the records land after it last looked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let records = (0..3)
        .map(|i| OutgoingRecord {
            partition: Some(1),
            value: format!("v{i}").into(),
            ..OutgoingRecord::default()
        })
        .collect();
    log.append("wake", records).await.expect("append");
    let seen = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("woken well before its ten-minute wait ran out")
        .expect("joined");
    let expected: Vec<bytes::Bytes> = (0..3).map(|i| format!("v{i}").into()).collect();
    assert_eq!(seen, expected);
}

//! The behaviour every `EventLog` and `KvStore` backend must have, as one suite of async checks.
//!
//! Each backend's test file instantiates every check with a fresh log (see
//! `storage/tests/embedded_conformance.rs`). A check panics with a message on the first
//! deviation. Topic and group names are prefixed with `prefix` so that checks can share a
//! broker that never deletes topics.

use bytes::Bytes;
use kinfold_core::partitioner::partition_for_key;
use kinfold_core::ports::{EventLog, KvMutation, KvStore, LogError, OutgoingRecord};
use std::collections::HashMap;
use std::sync::Arc;

fn record(key: &str, value: &str) -> OutgoingRecord {
    OutgoingRecord {
        key: Some(Bytes::from(key.to_owned())),
        value: Bytes::from(value.to_owned()),
        headers: vec![("origin".to_owned(), Bytes::from_static(b"conformance"))],
        timestamp_millis: 1_700_000_000_000,
        partition: None,
    }
}

/// The names of every check, for backends that list them.
pub const CHECKS: [&str; 7] = [
    "topics_are_created_explicitly",
    "appends_read_back_in_order",
    "keys_pick_partitions_like_kafka",
    "reads_stop_at_the_end",
    "group_positions_are_kept_per_group",
    "concurrent_appends_stay_dense",
    "started_appends_land_in_the_order_started",
];

/// Runs the check called `name`.
pub async fn run(name: &str, log: Arc<dyn EventLog>, prefix: &str) {
    match name {
        "topics_are_created_explicitly" => topics_are_created_explicitly(log, prefix).await,
        "appends_read_back_in_order" => appends_read_back_in_order(log, prefix).await,
        "keys_pick_partitions_like_kafka" => keys_pick_partitions_like_kafka(log, prefix).await,
        "reads_stop_at_the_end" => reads_stop_at_the_end(log, prefix).await,
        "group_positions_are_kept_per_group" => {
            group_positions_are_kept_per_group(log, prefix).await
        }
        "concurrent_appends_stay_dense" => concurrent_appends_stay_dense(log, prefix).await,
        "started_appends_land_in_the_order_started" => {
            started_appends_land_in_the_order_started(log, prefix).await
        }
        other => panic!("no conformance check named {other}"),
    }
}

/// Topics exist only once created; creating again with the same count is a no-op; another
/// count or an illegal name is refused.
pub async fn topics_are_created_explicitly(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}.topics");
    assert!(matches!(
        log.append(&topic, vec![record("k", "v")]).await,
        Err(LogError::UnknownTopic(_))
    ));
    let spec = log
        .ensure_topic(&topic, 3)
        .await
        .expect("creates the topic");
    assert_eq!(spec.partitions, 3);
    assert_eq!(
        log.ensure_topic(&topic, 3)
            .await
            .expect("idempotent")
            .partitions,
        3
    );
    assert!(matches!(
        log.ensure_topic(&topic, 4).await,
        Err(LogError::PartitionCountMismatch {
            existing: 3,
            requested: 4,
            ..
        })
    ));
    assert_eq!(log.partitions(&topic).await.expect("partitions"), 3);
    assert!(matches!(
        log.ensure_topic("bad topic name!", 1).await,
        Err(LogError::InvalidTopicName(_))
    ));
    assert!(matches!(
        log.read(&topic, 3, 0, 10).await,
        Err(LogError::UnknownPartition { partition: 3, .. })
    ));
}

/// Offsets are dense from 0; records come back with their key, value, headers and timestamp.
pub async fn appends_read_back_in_order(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}.order");
    log.ensure_topic(&topic, 1).await.expect("topic");
    let first: Vec<OutgoingRecord> = (0..5).map(|i| record("k", &format!("a{i}"))).collect();
    let positions = log.append(&topic, first.clone()).await.expect("append");
    assert_eq!(
        positions.iter().map(|p| p.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let second = log
        .append(&topic, vec![record("k", "b0")])
        .await
        .expect("append");
    assert_eq!(second[0].offset, 5);
    let records = log.read(&topic, 0, 0, 100).await.expect("read");
    assert_eq!(records.len(), 6);
    for (index, stored) in records.iter().enumerate() {
        assert_eq!(stored.offset, index as u64);
        assert_eq!(stored.partition, 0);
    }
    assert_eq!(records[0].key, first[0].key);
    assert_eq!(records[0].value, first[0].value);
    assert_eq!(records[0].headers, first[0].headers);
    assert_eq!(records[0].timestamp_millis, first[0].timestamp_millis);
    assert_eq!(records[5].value, Bytes::from_static(b"b0"));
    let middle = log
        .read(&topic, 0, 2, 2)
        .await
        .expect("read from the middle");
    assert_eq!(
        middle.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

/// A keyed record lands where Kafka's default partitioner puts it; an explicit partition wins.
pub async fn keys_pick_partitions_like_kafka(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}.keys");
    log.ensure_topic(&topic, 6).await.expect("topic");
    let keys: Vec<String> = (0..40).map(|i| format!("customer-{i}")).collect();
    let records: Vec<OutgoingRecord> = keys.iter().map(|key| record(key, key)).collect();
    let positions = log.append(&topic, records).await.expect("append");
    for (key, position) in keys.iter().zip(&positions) {
        assert_eq!(
            position.partition,
            partition_for_key(key.as_bytes(), 6),
            "key {key}"
        );
    }
    let mut explicit = record("customer-0", "pinned");
    explicit.partition = Some(5);
    let pinned = log.append(&topic, vec![explicit]).await.expect("append");
    assert_eq!(pinned[0].partition, 5);
    let mut out_of_range = record("x", "y");
    out_of_range.partition = Some(6);
    assert!(log.append(&topic, vec![out_of_range]).await.is_err());
}

/// Reading at the end gives nothing; beyond the end is an error; watermarks track appends.
pub async fn reads_stop_at_the_end(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}.end");
    log.ensure_topic(&topic, 2).await.expect("topic");
    assert_eq!(log.watermarks(&topic, 0).await.expect("watermarks"), (0, 0));
    let mut records = Vec::new();
    for i in 0..3 {
        let mut pinned = record("k", &format!("v{i}"));
        pinned.partition = Some(1);
        records.push(pinned);
    }
    log.append(&topic, records).await.expect("append");
    assert_eq!(log.watermarks(&topic, 1).await.expect("watermarks").1, 3);
    assert_eq!(log.watermarks(&topic, 0).await.expect("watermarks").1, 0);
    assert!(
        log.read(&topic, 1, 3, 10)
            .await
            .expect("read at end")
            .is_empty()
    );
    assert!(matches!(
        log.read(&topic, 1, 4, 10).await,
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

/// Positions are stored per group and partition, and survive being read back.
pub async fn group_positions_are_kept_per_group(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}.groups");
    let group_a = format!("{prefix}.group-a");
    let group_b = format!("{prefix}.group-b");
    log.ensure_topic(&topic, 2).await.expect("topic");
    let mut records = Vec::new();
    for i in 0..4 {
        let mut pinned = record("k", &format!("v{i}"));
        pinned.partition = Some(0);
        records.push(pinned);
    }
    log.append(&topic, records).await.expect("append");
    assert_eq!(
        log.committed(&group_a, &topic, 0).await.expect("committed"),
        None
    );
    log.commit(&group_a, &topic, 0, 3).await.expect("commit");
    log.commit(&group_b, &topic, 0, 1).await.expect("commit");
    assert_eq!(
        log.committed(&group_a, &topic, 0).await.expect("committed"),
        Some(3)
    );
    assert_eq!(
        log.committed(&group_b, &topic, 0).await.expect("committed"),
        Some(1)
    );
    assert_eq!(
        log.committed(&group_a, &topic, 1).await.expect("committed"),
        None
    );
    log.commit(&group_a, &topic, 0, 4).await.expect("commit");
    assert_eq!(
        log.committed(&group_a, &topic, 0).await.expect("committed"),
        Some(4)
    );
}

/// Many writers at once: every record gets a distinct offset, offsets stay dense, and each
/// writer's records keep their order within a partition.
pub async fn concurrent_appends_stay_dense(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}.concurrent");
    log.ensure_topic(&topic, 3).await.expect("topic");
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let log = log.clone();
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..25 {
                let records = (0..4)
                    .map(|i| {
                        record(
                            &format!("w{writer}"),
                            &format!("w{writer}-{}", batch * 4 + i),
                        )
                    })
                    .collect();
                log.append(&topic, records).await.expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let mut total = 0;
    for partition in 0..3 {
        let records = log.read(&topic, partition, 0, 10_000).await.expect("read");
        let mut last_sequence: HashMap<String, u64> = HashMap::new();
        for (index, stored) in records.iter().enumerate() {
            assert_eq!(
                stored.offset, index as u64,
                "dense offsets in partition {partition}"
            );
            let value = String::from_utf8(stored.value.to_vec()).expect("utf8");
            let (writer, sequence) = value.split_once('-').expect("writer-sequence");
            let sequence: u64 = sequence.parse().expect("number");
            if let Some(previous) = last_sequence.insert(writer.to_owned(), sequence) {
                assert!(
                    sequence > previous,
                    "{writer} out of order in partition {partition}"
                );
            }
        }
        total += records.len();
    }
    assert_eq!(total, 8 * 25 * 4);
}

/// Appends started one after the other and awaited together (in reverse) land in the order
/// they were started in every partition, each at the positions its future reports.
pub async fn started_appends_land_in_the_order_started(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}.started");
    log.ensure_topic(&topic, 2).await.expect("topic");
    let mut pending = Vec::new();
    for append in 0..20 {
        let records = (0..50)
            .map(|i| record(&format!("k{}", i % 7), &format!("{append}-{i}")))
            .collect();
        pending.push(log.start_append(&topic, records).await.expect("started"));
    }
    let mut reported = Vec::new();
    while let Some(append) = pending.pop() {
        reported.push(append.await.expect("durable"));
    }
    reported.reverse();
    let mut stored: HashMap<(u32, u64), String> = HashMap::new();
    for partition in 0..2 {
        let records = log.read(&topic, partition, 0, 10_000).await.expect("read");
        let mut last: Option<(u64, u64)> = None;
        for record in &records {
            let value = String::from_utf8(record.value.to_vec()).expect("utf8");
            let (append, i) = value.split_once('-').expect("append-index");
            let order = (append.parse().expect("number"), i.parse().expect("number"));
            assert!(
                last.is_none_or(|last| order > last),
                "{value} after {last:?} in partition {partition}"
            );
            last = Some(order);
            stored.insert((partition, record.offset), value);
        }
    }
    assert_eq!(stored.len(), 20 * 50);
    for (append, positions) in reported.iter().enumerate() {
        assert_eq!(positions.len(), 50);
        for (i, position) in positions.iter().enumerate() {
            assert_eq!(
                stored.get(&(position.partition, position.offset)),
                Some(&format!("{append}-{i}")),
                "append {append} record {i} is where its future said"
            );
        }
    }
}

/// The names of every key-value check.
pub const KV_CHECKS: [&str; 3] = [
    "rows_are_addressed_by_partition_and_clustering_key",
    "partitions_scan_in_clustering_order",
    "batches_within_a_partition_apply_together",
];

/// Runs the key-value check called `name`. Tables are prefixed with `prefix`.
pub async fn run_kv(name: &str, kv: Arc<dyn KvStore>, prefix: &str) {
    let table = format!("{prefix}_{name}");
    match name {
        "rows_are_addressed_by_partition_and_clustering_key" => {
            rows_are_addressed(kv, &table).await
        }
        "partitions_scan_in_clustering_order" => partitions_scan_in_order(kv, &table).await,
        "batches_within_a_partition_apply_together" => batches_apply_together(kv, &table).await,
        other => panic!("no key-value check named {other}"),
    }
}

fn put(clustering_key: &[u8], value: &[u8]) -> KvMutation {
    KvMutation::Put {
        clustering_key: Bytes::copy_from_slice(clustering_key),
        value: Bytes::copy_from_slice(value),
    }
}

/// A row is found by its exact (partition, clustering) key and by nothing else; a partition key
/// that is a prefix of another is a different partition.
pub async fn rows_are_addressed(kv: Arc<dyn KvStore>, table: &str) {
    kv.apply(table, b"p", vec![put(b"a", b"1")], true)
        .await
        .expect("put");
    kv.apply(table, b"pp", vec![put(b"a", b"2")], false)
        .await
        .expect("put");
    assert_eq!(
        kv.get(table, b"p", b"a").await.expect("get").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        kv.get(table, b"pp", b"a").await.expect("get").as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(kv.get(table, b"p", b"b").await.expect("get"), None);
    assert_eq!(kv.get(table, b"q", b"a").await.expect("get"), None);
    assert_eq!(
        kv.scan_partition(table, b"p", b"", 100)
            .await
            .expect("scan")
            .len(),
        1
    );
    kv.apply(table, b"p", vec![put(b"a", b"3")], true)
        .await
        .expect("overwrite");
    assert_eq!(
        kv.get(table, b"p", b"a").await.expect("get").as_deref(),
        Some(&b"3"[..])
    );
    let mut partitions = kv.partition_keys(table).await.expect("partition keys");
    partitions.sort();
    assert_eq!(
        partitions,
        vec![Bytes::from_static(b"p"), Bytes::from_static(b"pp")]
    );
}

/// Rows of a partition come back in clustering-key byte order, from a start key, up to a limit.
pub async fn partitions_scan_in_order(kv: Arc<dyn KvStore>, table: &str) {
    let keys: Vec<Vec<u8>> = vec![
        b"b".to_vec(),
        b"a".to_vec(),
        b"c".to_vec(),
        vec![0xff],
        b"ab".to_vec(),
    ];
    let mutations = keys.iter().map(|key| put(key, key)).collect();
    kv.apply(table, b"part", mutations, true)
        .await
        .expect("put");
    let rows = kv
        .scan_partition(table, b"part", b"", 100)
        .await
        .expect("scan");
    let scanned: Vec<Vec<u8>> = rows.iter().map(|row| row.clustering_key.to_vec()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(scanned, sorted);
    let from_b = kv
        .scan_partition(table, b"part", b"b", 2)
        .await
        .expect("scan");
    let from_b: Vec<&[u8]> = from_b
        .iter()
        .map(|row| row.clustering_key.as_ref())
        .collect();
    assert_eq!(from_b, vec![&b"b"[..], &b"c"[..]]);
    assert!(
        kv.scan_partition(table, b"other", b"", 10)
            .await
            .expect("scan")
            .is_empty()
    );
}

/// Puts and deletes of one batch land together; a deleted row is gone.
pub async fn batches_apply_together(kv: Arc<dyn KvStore>, table: &str) {
    kv.apply(table, b"p", vec![put(b"1", b"x"), put(b"2", b"y")], true)
        .await
        .expect("put");
    kv.apply(
        table,
        b"p",
        vec![
            KvMutation::Delete {
                clustering_key: Bytes::from_static(b"1"),
            },
            put(b"3", b"z"),
        ],
        true,
    )
    .await
    .expect("batch");
    let rows = kv.scan_partition(table, b"p", b"", 10).await.expect("scan");
    let keys: Vec<&[u8]> = rows.iter().map(|row| row.clustering_key.as_ref()).collect();
    assert_eq!(keys, vec![&b"2"[..], &b"3"[..]]);
}

//! The segment stage on the embedded log and key-value store, with a clock the test moves:
//! events go through the profile stage to `profiles.changed` and on to the segment stage.
//! A customer leaves "dormant" on the day of a purchase and enters it again on the 90th quiet
//! day with no event arriving (its timer); membership, timers and fired triggers survive a
//! restart; a birthday coupon fires once, seven days before, and not again after a restart;
//! records an outbox still holds after a crash are sent once.

mod common;

use bytes::Bytes;
use common::{START, member, sale};
use kinfold_core::CanonicalEvent;
use kinfold_core::ports::{EventLog, KvMutation, KvStore};
use kinfold_core::time::{Clock, ManualClock};
use kinfold_identity::model::CustomerId;
use kinfold_identity::records::resolved_record;
use kinfold_profile::ProfileRules;
use kinfold_profile::fold::DAY_MICROS;
use kinfold_profile::stage::{MAX_IN_FLIGHT, ProfileProcessor};
use kinfold_schemas::catalog::CANONICAL_SUBJECT;
use kinfold_schemas::codec::Codecs;
use kinfold_schemas::wire::frame;
use kinfold_schemas::{Catalog, SchemaRegistry};
use kinfold_segments::stage::{
    FiringRecord, MEMBERS_TABLE, MembershipRecord, SegmentProcessor, SegmentStage, SegmentTopics,
    TriggerDefinition,
};
use kinfold_storage::EmbeddedDatabase;
use serde_json::json;
use std::sync::Arc;

const RESOLVED: &str = "events.resolved";

struct Fixture {
    _directory: tempfile::TempDir,
    _database: EmbeddedDatabase,
    log: Arc<dyn EventLog>,
    kv: Arc<dyn KvStore>,
    registry: Arc<SchemaRegistry>,
    clock: Arc<ManualClock>,
    topics: SegmentTopics,
    schema_id: u32,
    codecs: Codecs,
}

impl Fixture {
    /// A fresh embedded database in a temporary directory, its clock at `at`.
    async fn open(at: i64) -> Self {
        let directory = tempfile::tempdir().expect("tempdir");
        let database = EmbeddedDatabase::open(directory.path()).expect("database");
        let log: Arc<dyn EventLog> = Arc::new(database.log());
        let kv: Arc<dyn KvStore> = Arc::new(database.kv());
        let registry = Arc::new(SchemaRegistry::open(kv.clone()).await.expect("registry"));
        registry
            .register_catalog(&Catalog::embedded())
            .await
            .expect("catalog");
        let schema_id = registry
            .latest_id(CANONICAL_SUBJECT)
            .expect("canonical schema");
        log.ensure_topic(RESOLVED, 4).await.expect("topic");
        let topics = SegmentTopics::default();
        topics.ensure(log.as_ref()).await.expect("topics");
        Self {
            _directory: directory,
            _database: database,
            log,
            kv,
            registry,
            clock: Arc::new(ManualClock::new(at)),
            topics,
            schema_id,
            codecs: Codecs::new(),
        }
    }

    /// A segment stage over the store, as a restart makes it.
    fn stage(&self) -> Arc<SegmentStage> {
        Arc::new(SegmentStage::new(
            self.log.clone(),
            self.kv.clone(),
            self.registry.clone(),
            ProfileRules::default_rules(),
            self.clock.clone(),
            self.topics.clone(),
        ))
    }

    /// `events` of `customer` through the profile stage and then `stage`.
    async fn deliver(
        &self,
        stage: &Arc<SegmentStage>,
        customer: CustomerId,
        events: &[CanonicalEvent],
    ) {
        let records = events
            .iter()
            .map(|event| {
                let bytes = self.codecs.encode_canonical(event).expect("encodes");
                resolved_record(&Bytes::from(frame(self.schema_id, &bytes)), customer, 0)
            })
            .collect();
        self.log.append(RESOLVED, records).await.expect("append");
        let profile = ProfileProcessor::new(
            self.log.clone(),
            self.kv.clone(),
            self.registry.clone(),
            RESOLVED,
        )
        .with_notices(self.topics.changed.clone());
        kinfold_tests::run_stage_until_caught_up(
            self.log.clone(),
            profile,
            "profile",
            RESOLVED,
            MAX_IN_FLIGHT,
            16,
        )
        .await;
        kinfold_tests::run_stage_until_caught_up(
            self.log.clone(),
            SegmentProcessor(stage.clone()),
            "segments",
            &self.topics.changed,
            kinfold_segments::stage::MAX_IN_FLIGHT,
            16,
        )
        .await;
    }

    /// Every record of `topic`, in partition and offset order.
    async fn records(&self, topic: &str) -> Vec<Bytes> {
        let mut values = Vec::new();
        for partition in 0..self.topics.output_partitions {
            let mut from = 0;
            loop {
                let records = self
                    .log
                    .read(topic, partition, from, 1_000)
                    .await
                    .expect("read");
                let Some(last) = records.last() else {
                    break;
                };
                from = last.offset + 1;
                values.extend(records.into_iter().map(|record| record.value));
            }
        }
        values
    }

    async fn changes(&self, segment: &str, customer: CustomerId) -> Vec<(bool, String)> {
        self.records(&self.topics.changes)
            .await
            .iter()
            .map(|value| serde_json::from_slice::<MembershipRecord>(value).expect("a change"))
            .filter(|record| record.segment == segment && record.customer == customer.to_string())
            .map(|record| (record.entered, record.cause))
            .collect()
    }

    async fn firings(&self) -> Vec<FiringRecord> {
        self.records(&self.topics.triggers)
            .await
            .iter()
            .map(|value| serde_json::from_slice(value).expect("a firing"))
            .collect()
    }
}

fn customer(n: u128) -> CustomerId {
    CustomerId(uuid::Uuid::from_u128(0xc000 + n))
}

/// The members and customers of a preview of `rule`, which one decided from the stored
/// profiles one by one must equal.
async fn preview(stage: &SegmentStage, rule: &str) -> (u64, u64) {
    let rule = kinfold_segments::rule::parse(rule).expect("parses");
    let preview = stage.preview(&rule, None, 10).await.expect("preview");
    let from_store = stage
        .preview_from_store(&rule, None, 10)
        .await
        .expect("preview");
    assert_eq!(preview, from_store);
    (preview.members, preview.customers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dormant_follows_purchases_and_the_passing_days_across_a_restart() {
    let t0 = START + 150 * DAY_MICROS;
    let fixture = Fixture::open(t0).await;
    let stage = fixture.stage();
    stage
        .define_segment(
            "dormant",
            "orders >= 1 and last_purchase_at < now - 90d",
            None,
        )
        .await
        .expect("defines");
    let alice = customer(1);

    // A purchase 120 days ago: dormant as soon as it is folded.
    fixture
        .deliver(
            &stage,
            alice,
            &[sale(1, t0 - 120 * DAY_MICROS, "a", "tea", "s1", 500)],
        )
        .await;
    assert_eq!(stage.count("dormant").await.expect("count"), Some(1));

    // Five days on, she buys again: she leaves on that day.
    let bought = t0 + 5 * DAY_MICROS;
    fixture.clock.set(bought);
    fixture
        .deliver(&stage, alice, &[sale(2, bought, "a", "tea", "s1", 700)])
        .await;
    assert_eq!(stage.count("dormant").await.expect("count"), Some(0));
    // A preview reads her facts as the stage last evaluated them.
    assert_eq!(
        preview(&stage, "orders >= 2 and net_spend = 12").await,
        (1, 1)
    );
    let wake = stage
        .wake_at(&alice.to_string())
        .await
        .expect("wake")
        .expect("a timer is set");
    // The condition flips just after the 90th day since the purchase.
    assert!(
        wake > bought + 90 * DAY_MICROS && wake <= bought + 90 * DAY_MICROS + 1_000_000,
        "wake-up at {wake}, purchase at {bought}"
    );

    // A restart on day 89: nothing is due, and nothing changes.
    fixture.clock.set(bought + 89 * DAY_MICROS);
    let stage = fixture.stage();
    assert_eq!(stage.wake_due().await.expect("wakes").evaluated, 0);
    assert_eq!(stage.count("dormant").await.expect("count"), Some(0));
    assert_eq!(
        stage.wake_at(&alice.to_string()).await.expect("wake"),
        Some(wake),
        "the timer survives the restart"
    );
    // Her facts are read back from the store on start.
    assert_eq!(
        preview(&stage, "orders >= 2 and net_spend = 12").await,
        (1, 1)
    );
    assert_eq!(
        preview(&stage, "last_purchase_at < now - 89d").await,
        (0, 1)
    );

    // The 90th quiet day is over: the timer wakes her, no event arriving, and she is dormant.
    fixture.clock.set(wake);
    let woken = stage.wake_due().await.expect("wakes");
    assert_eq!((woken.evaluated, woken.entered), (1, 1));
    assert_eq!(
        stage.members("dormant").await.expect("members"),
        Some(vec![alice.to_string()])
    );
    assert_eq!(
        fixture.changes("dormant", alice).await,
        [
            (true, "event".to_owned()),
            (false, "event".to_owned()),
            (true, "timer".to_owned())
        ]
    );

    assert_eq!(
        preview(&stage, "orders >= 1 and last_purchase_at < now - 90d").await,
        (1, 1)
    );

    // Once more after another restart: membership as it was, and nothing sent again.
    let stage = fixture.stage();
    assert_eq!(stage.count("dormant").await.expect("count"), Some(1));
    assert_eq!(stage.wake_due().await.expect("wakes").entered, 0);
    assert_eq!(fixture.changes("dormant", alice).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_birthday_coupon_fires_once_a_week_before_and_not_again_after_a_restart() {
    // 2026-02-20, noon in Shanghai; her birthday is on 15 March.
    let t0 = START + 50 * DAY_MICROS + 4 * 3_600_000_000;
    let fixture = Fixture::open(t0).await;
    let stage = fixture.stage();
    stage
        .define_trigger(TriggerDefinition {
            id: "birthday-coupon".into(),
            rule: "birthday_within(7d)".into(),
            period: "birthday".into(),
            purpose: Some("marketing_sms".into()),
        })
        .await
        .expect("defines");
    let bea = customer(2);
    fixture
        .deliver(
            &stage,
            bea,
            &[
                member(
                    10,
                    t0 - DAY_MICROS,
                    json!({"event_type": "REGISTERED", "birthday": "1990-03-15"}),
                ),
                member(
                    11,
                    t0 - DAY_MICROS,
                    json!({"event_type": "CONSENT_GRANTED", "consent_purpose": "marketing_sms"}),
                ),
            ],
        )
        .await;
    assert!(
        fixture.firings().await.is_empty(),
        "three weeks before: nothing"
    );
    let wake = stage
        .wake_at(&bea.to_string())
        .await
        .expect("wake")
        .expect("the window's start is a timer");
    assert!(wake > t0, "the timer is ahead");

    // The window opens: the timer fires the coupon.
    fixture.clock.set(wake);
    assert_eq!(stage.wake_due().await.expect("wakes").fired, 1);
    let firings = fixture.firings().await;
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].period, "birthday:2026");
    assert_eq!(firings[0].customer, bea.to_string());
    let day = chrono::DateTime::from_timestamp_micros(firings[0].at)
        .expect("an instant")
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        .to_string();
    assert_eq!(day, "2026-03-08", "seven days before the birthday");

    // A restart two days later, and a new event of hers: nothing fires again.
    fixture.clock.set(wake + 2 * DAY_MICROS);
    let stage = fixture.stage();
    stage.wake_due().await.expect("wakes");
    fixture
        .deliver(
            &stage,
            bea,
            &[sale(12, wake + 2 * DAY_MICROS, "a", "tea", "s1", 300)],
        )
        .await;
    assert_eq!(fixture.firings().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_left_in_an_outbox_by_a_crash_are_sent_once() {
    let t0 = START + 150 * DAY_MICROS;
    let fixture = Fixture::open(t0).await;
    let stage = fixture.stage();
    stage
        .define_segment("buyers", "orders >= 1", None)
        .await
        .expect("defines");
    let (ann, bob) = (customer(3), customer(4));
    fixture
        .deliver(
            &stage,
            ann,
            &[sale(20, t0 - DAY_MICROS, "a", "tea", "s1", 100)],
        )
        .await;
    fixture
        .deliver(
            &stage,
            bob,
            &[sale(21, t0 - DAY_MICROS, "a", "tea", "s1", 100)],
        )
        .await;
    let sent = fixture.records(&fixture.topics.changes).await;
    assert_eq!(sent.len(), 2);

    // A crash after the rows were written: Ann's record had been appended, Bob's not. Their
    // outbox rows as the stage writes them (the record, and where the topic ended before).
    let ann_record: MembershipRecord = serde_json::from_slice(
        sent.iter()
            .find(|value| {
                serde_json::from_slice::<MembershipRecord>(value)
                    .is_ok_and(|record| record.customer == ann.to_string())
            })
            .expect("Ann's entry"),
    )
    .expect("a change");
    let bob_record = MembershipRecord {
        id: uuid::Uuid::from_u128(0xb0b),
        customer: bob.to_string(),
        ..ann_record.clone()
    };
    for (who, record) in [(ann, &ann_record), (bob, &bob_record)] {
        let key = who.to_string();
        let partition = kinfold_core::partitioner::partition_for_key(
            key.as_bytes(),
            fixture.topics.output_partitions,
        );
        let item = json!({
            "topic": fixture.topics.changes, "partition": partition, "from": 0,
            "id": record.id, "key": key,
            "value": serde_json::to_string(record).expect("serialises"),
            "timestamp_millis": 0,
        });
        let mut row_key = vec![b'o'];
        row_key.extend_from_slice(record.id.as_bytes());
        fixture
            .kv
            .apply(
                MEMBERS_TABLE,
                key.as_bytes(),
                vec![KvMutation::Put {
                    clustering_key: Bytes::from(row_key),
                    value: Bytes::from(item.to_string()),
                }],
                true,
            )
            .await
            .expect("outbox row");
    }

    // The restart sends Bob's and not Ann's again, and empties both outboxes.
    let stage = fixture.stage();
    assert_eq!(stage.count("buyers").await.expect("count"), Some(2));
    let after = fixture.records(&fixture.topics.changes).await;
    assert_eq!(after.len(), 3);
    let ids: Vec<uuid::Uuid> = after
        .iter()
        .map(|value| {
            serde_json::from_slice::<MembershipRecord>(value)
                .expect("a change")
                .id
        })
        .collect();
    assert_eq!(ids.iter().filter(|id| **id == ann_record.id).count(), 1);
    assert_eq!(ids.iter().filter(|id| **id == bob_record.id).count(), 1);
    for who in [ann, bob] {
        let rows = fixture
            .kv
            .scan_partition(MEMBERS_TABLE, who.to_string().as_bytes(), b"o", 10)
            .await
            .expect("rows");
        assert!(
            rows.iter().all(|row| row.clustering_key[0] != b'o'),
            "outbox emptied"
        );
    }
    // A second restart sends nothing.
    fixture.stage().count("buyers").await.expect("count");
    assert_eq!(fixture.records(&fixture.topics.changes).await.len(), 3);
    let _ = fixture.clock.now_micros();
}

#[test]
fn the_example_trigger_file_reads_and_a_wrong_one_says_why() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/triggers.example.toml"
    ))
    .expect("the example file");
    let file = kinfold_segments::stage::TriggersFile::from_toml(&text).expect("reads");
    let ids: Vec<&str> = file.trigger.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "birthday-coupon",
            "high-value-lapse",
            "coupon-expiring",
            "repurchase-nudge"
        ]
    );
    for (wrong, says) in [
        (
            "[[trigger]]\nid = \"a\"\nrule = \"orders >=\"\nperiod = \"once\"\n",
            "expected",
        ),
        (
            "[[trigger]]\nid = \"a\"\nrule = \"orders >= 1\"\nperiod = \"weekly\"\n",
            "weekly",
        ),
        (
            "[[trigger]]\nid = \"a b\"\nrule = \"orders >= 1\"\nperiod = \"once\"\n",
            "letters",
        ),
        (
            "[[trigger]]\nid = \"a\"\nrule = \"orders >= 1\"\nperiod = \"once\"\n[[trigger]]\nid = \"a\"\nrule = \"orders >= 2\"\nperiod = \"once\"\n",
            "twice",
        ),
        (
            "[[trigger]]\nid = \"a\"\nrule = \"orders >= 1\"\nperiod = \"once\"\nwhen = 1\n",
            "unknown field",
        ),
    ] {
        let error = kinfold_segments::stage::TriggersFile::from_toml(wrong)
            .expect_err(wrong)
            .to_string();
        assert!(error.contains(says), "{wrong}: {error}");
    }
}

/// `value`'s percent rank among `values` (SQL's `percent_rank`, times 100).
fn percent_rank(values: &[i64], value: i64) -> f64 {
    let below = values.iter().filter(|other| **other < value).count();
    100.0 * below as f64 / (values.len() - 1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_decile_follows_the_population_as_it_is_refreshed() {
    let t0 = START + 150 * DAY_MICROS;
    let fixture = Fixture::open(t0).await;
    let stage = fixture.stage();
    // Twenty customers; the k-th has spent 100 * (k + 1) yuan.
    let mut spent: Vec<(CustomerId, i64)> = Vec::new();
    for k in 0..20u128 {
        let who = customer(100 + k);
        let price = 10_000 * (k as i64 + 1);
        fixture
            .deliver(
                &stage,
                who,
                &[sale(1_000 + k, t0 - DAY_MICROS, "a", "tea", "s1", price)],
            )
            .await;
        spent.push((who, price));
    }
    let top = |spent: &[(CustomerId, i64)]| -> Vec<String> {
        let values: Vec<i64> = spent.iter().map(|(_, price)| *price).collect();
        let mut top: Vec<String> = spent
            .iter()
            .filter(|(_, price)| percent_rank(&values, *price) >= 90.0)
            .map(|(who, _)| who.to_string())
            .collect();
        top.sort_unstable();
        top
    };
    stage
        .define_segment("top-decile", "percentile(net_spend) >= 90", None)
        .await
        .expect("defines");
    assert_eq!(
        stage.members("top-decile").await.expect("members"),
        Some(top(&spent))
    );
    assert_eq!(top(&spent).len(), 2);

    // The smallest spender buys big: against the population as last gathered she ranks first
    // and enters at once; the others wait for the refresh.
    let (small, _) = spent[0];
    fixture.clock.set(t0 + 3_600_000_000);
    fixture
        .deliver(&stage, small, &[sale(2_000, t0, "a", "tea", "s1", 500_000)])
        .await;
    spent[0].1 += 500_000;
    let members = stage
        .members("top-decile")
        .await
        .expect("members")
        .expect("defined");
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.contains(&small.to_string()));

    // Not due yet (gathered less than a day ago), then due: the population is gathered again
    // and every customer evaluated under it; the one pushed out leaves, cause refresh.
    let day = 24 * 3_600_000_000;
    assert_eq!(
        stage
            .refresh_population_if_due(day)
            .await
            .expect("refresh")
            .evaluated,
        0
    );
    fixture.clock.set(t0 + day);
    let refreshed = stage.refresh_population_if_due(day).await.expect("refresh");
    assert_eq!(refreshed.evaluated, 20);
    assert_eq!(
        stage.members("top-decile").await.expect("members"),
        Some(top(&spent))
    );
    let (pushed_out, _) = spent[18];
    assert_eq!(
        fixture.changes("top-decile", pushed_out).await,
        [(true, "refresh".to_owned()), (false, "refresh".to_owned())]
    );
    // A preview of the same rule over the stored profiles agrees.
    let preview = stage
        .preview(
            &kinfold_segments::rule::parse("percentile(net_spend) >= 90").expect("parses"),
            None,
            10,
        )
        .await
        .expect("preview");
    assert_eq!(preview.sample, top(&spent));
}

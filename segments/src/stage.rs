//! The segment stage: reads `profiles.changed`, evaluates each changed customer against every
//! segment and trigger, wakes customers when a timer an evaluation set comes due, and says
//! who entered and left on `segments.changes` and what fired on `triggers` (see
//! `docs/segments.md`).
//!
//! Stored in the key-value store:
//! - [`DEFINITIONS_TABLE`]: partition `segments`, a row per segment (its definition, as JSON,
//!   at its current version); partition `triggers`, a row per trigger.
//! - [`MEMBERS_TABLE`]: a partition per customer (its id as text): `m` + segment id for each
//!   segment it is a member of (the version it entered under), `w` its wake-up instant, `f` +
//!   firing id for each trigger that fired for it, and `o` + record id for each record it has
//!   to send and has not yet been seen sent (its outbox).
//!
//! An evaluation's rows and the records it sends go in one atomic write; the records are then
//! appended and their outbox rows deleted. After a crash, records still in an outbox are looked
//! for in their topic from where it ended when they were written, and only the ones not there
//! are appended: a change or a firing is sent once. Evaluating a customer again changes nothing
//! when nothing changed, so `profiles.changed` needs no positions of its own: replaying it
//! (at least once delivery) only re-checks customers.
//!
//! In memory: every segment's members as a compressed bitmap of customer slots (for counting
//! and set operations) and the wake-ups in time order (the timer index, rebuilt from the `w`
//! rows), loaded from the store when the stage starts. One stage holds every customer: the
//! embedded deployment's, or one consumer of `profiles.changed` on Kafka.

use crate::eval::{Explanation, Facts, Population, Stores, Subject, consented, evaluate, explain};
use crate::membership::{Cause, Change, Memberships, Segment, Slot};
use crate::rule::{self, Rule, RuleError};
use crate::triggers::{Fired, Firing, Period, Trigger};
use bytes::Bytes;
use kinfold_core::EventId;
use kinfold_core::partitioner::partition_for_key;
use kinfold_core::ports::{
    EventLog, KvError, KvMutation, KvStore, LogError, LogRecord, OutgoingRecord, TopicPartition,
};
use kinfold_core::stage::Processor;
use kinfold_core::time::{Clock, TimestampMicros};
use kinfold_profile::ProfileRules;
use kinfold_profile::cache::CustomerCache;
use kinfold_profile::stage::{ProfileChanged, ProfileError, StoredCustomer, load_customer};
use kinfold_schemas::SchemaRegistry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::AddAssign;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Segment and trigger definitions.
pub const DEFINITIONS_TABLE: &str = "segment_definitions";
/// Each customer's memberships, wake-up, fired triggers and outbox.
pub const MEMBERS_TABLE: &str = "segment_members";

const SEGMENTS_PARTITION: &[u8] = b"segments";
const TRIGGERS_PARTITION: &[u8] = b"triggers";
const MEMBER: u8 = b'm';
const WAKE: &[u8] = b"w";
const FIRED: u8 = b'f';
const OUTBOX: u8 = b'o';

/// The topics of the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentTopics {
    /// What it reads: `profiles.changed`.
    pub changed: String,
    pub changed_partitions: u32,
    /// Entries and exits: `segments.changes`.
    pub changes: String,
    /// Firings: `triggers`.
    pub triggers: String,
    pub output_partitions: u32,
}

impl Default for SegmentTopics {
    fn default() -> Self {
        Self {
            changed: "profiles.changed".into(),
            changed_partitions: 4,
            changes: "segments.changes".into(),
            triggers: "triggers".into(),
            output_partitions: 4,
        }
    }
}

impl SegmentTopics {
    /// Creates the topics, or checks them.
    pub async fn ensure(&self, log: &dyn EventLog) -> Result<(), LogError> {
        log.ensure_topic(&self.changed, self.changed_partitions)
            .await?;
        log.ensure_topic(&self.changes, self.output_partitions)
            .await?;
        log.ensure_topic(&self.triggers, self.output_partitions)
            .await?;
        Ok(())
    }
}

/// A segment definition as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentDefinition {
    pub id: String,
    pub version: u32,
    /// The rule's text.
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// A trigger definition as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDefinition {
    pub id: String,
    pub rule: String,
    /// `birthday`, `last_purchase`, `coupon` or `once`.
    pub period: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// A trigger file: `[[trigger]]` tables of [`TriggerDefinition`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggersFile {
    #[serde(default)]
    pub trigger: Vec<TriggerDefinition>,
}

impl TriggersFile {
    /// Reads a trigger file's text; each trigger's rule and period are checked.
    pub fn from_toml(text: &str) -> Result<Self, DefinitionError> {
        let file: Self = toml::from_str(text).map_err(|error| DefinitionError::Invalid {
            field: "triggers",
            reason: error.to_string(),
        })?;
        let mut ids = std::collections::BTreeSet::new();
        for trigger in &file.trigger {
            check_id("trigger.id", &trigger.id)?;
            parse_rule(&trigger.rule)?;
            period_of(&trigger.period)?;
            if !ids.insert(&trigger.id) {
                return Err(DefinitionError::Invalid {
                    field: "trigger.id",
                    reason: format!("`{}` twice", trigger.id),
                });
            }
        }
        Ok(file)
    }
}

/// What `segments.changes` carries, keyed by the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRecord {
    /// From the segment, its version, the customer, the direction and the instant: the same
    /// change always has the same id.
    pub id: uuid::Uuid,
    pub segment: String,
    pub version: u32,
    pub customer: String,
    /// Entered, else left.
    pub entered: bool,
    pub at: TimestampMicros,
    /// `event`, `timer` or `refresh`.
    pub cause: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
}

/// What `triggers` carries, keyed by the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiringRecord {
    pub id: uuid::Uuid,
    pub trigger: String,
    pub customer: String,
    pub period: String,
    pub at: TimestampMicros,
}

/// The namespace of membership change ids (a fixed random UUID).
const CHANGE_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x8d2a_6f13_c47e_4a95_b0e8_19f4_52c6_de07);

/// A record waiting in an outbox: where it goes, and where that topic partition ended before
/// it was written (where to look for it after a crash).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    topic: String,
    partition: u32,
    from: u64,
    id: uuid::Uuid,
    key: String,
    value: String,
    timestamp_millis: i64,
}

/// A rule's size over the stored profiles (see [`SegmentStage::preview`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Preview {
    pub members: u64,
    pub customers: u64,
    pub sample: Vec<String>,
}

/// What the stage counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SegmentTally {
    /// Customers evaluated.
    pub evaluated: u64,
    pub entered: u64,
    pub left: u64,
    pub fired: u64,
    /// Records of `profiles.changed` that could not be read.
    pub unreadable: u64,
}

impl AddAssign for SegmentTally {
    fn add_assign(&mut self, other: Self) {
        self.evaluated += other.evaluated;
        self.entered += other.entered;
        self.left += other.left;
        self.fired += other.fired;
        self.unreadable += other.unreadable;
    }
}

/// Why the stage could not finish (the batch is retried).
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("key-value store: {0}")]
    Kv(#[from] KvError),
    #[error("profile: {0}")]
    Profile(#[from] ProfileError),
    #[error("stored segment data unreadable: {0}")]
    Corrupt(String),
}

/// Why a definition is refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{}", .0.message)]
    Rule(RuleError),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("no segment {0}")]
    Unknown(String),
    #[error("segment {0} exists already")]
    Exists(String),
    #[error(transparent)]
    Stage(#[from] SegmentError),
}

fn corrupt(what: impl std::fmt::Display) -> SegmentError {
    SegmentError::Corrupt(what.to_string())
}

/// The customer's time zone: its `time_zone` trait when that names one, else China's.
fn time_zone_of(profile: &kinfold_profile::Profile) -> chrono_tz::Tz {
    profile
        .traits
        .get("time_zone")
        .and_then(|zone| zone.value.parse().ok())
        .unwrap_or(chrono_tz::Asia::Shanghai)
}

fn period_of(text: &str) -> Result<Period, DefinitionError> {
    match text {
        "birthday" => Ok(Period::Birthday),
        "last_purchase" => Ok(Period::LastPurchase),
        "once" => Ok(Period::Once),
        "coupon" => Ok(Period::Coupon),
        other => Err(DefinitionError::Invalid {
            field: "period",
            reason: format!("`{other}`: expected birthday, last_purchase, coupon or once"),
        }),
    }
}

/// A segment id: 1 to 64 letters, digits, `-`, `_` or `.`.
fn check_id(field: &'static str, id: &str) -> Result<(), DefinitionError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(DefinitionError::Invalid {
            field,
            reason: format!("`{id}`: 1 to 64 letters, digits, `-`, `_` or `.`"),
        });
    }
    Ok(())
}

/// The longest rule text taken.
pub const MAX_RULE_BYTES: usize = 16 * 1024;

/// Parses a rule's text, within [`MAX_RULE_BYTES`].
pub fn parse_rule(text: &str) -> Result<Rule, DefinitionError> {
    if text.len() > MAX_RULE_BYTES {
        return Err(DefinitionError::Invalid {
            field: "rule",
            reason: format!("{} bytes, more than {MAX_RULE_BYTES}", text.len()),
        });
    }
    rule::parse(text).map_err(DefinitionError::Rule)
}

fn segment_of(definition: &SegmentDefinition) -> Result<Segment, SegmentError> {
    Ok(Segment {
        id: definition.id.clone(),
        version: definition.version,
        rule: rule::parse(&definition.rule).map_err(|error| corrupt(error.message))?,
        purpose: definition.purpose.clone(),
    })
}

fn trigger_of(definition: &TriggerDefinition) -> Result<Trigger, SegmentError> {
    Ok(Trigger {
        id: definition.id.clone(),
        rule: rule::parse(&definition.rule).map_err(|error| corrupt(error.message))?,
        period: period_of(&definition.period).map_err(corrupt)?,
        purpose: definition.purpose.clone(),
    })
}

fn member_key(segment: &str) -> Bytes {
    let mut key = vec![MEMBER];
    key.extend_from_slice(segment.as_bytes());
    Bytes::from(key)
}

fn fired_key(id: &uuid::Uuid) -> Bytes {
    let mut key = vec![FIRED];
    key.extend_from_slice(id.as_bytes());
    Bytes::from(key)
}

fn outbox_key(id: &uuid::Uuid) -> Bytes {
    let mut key = vec![OUTBOX];
    key.extend_from_slice(id.as_bytes());
    Bytes::from(key)
}

fn micros_of(bytes: &[u8]) -> Option<TimestampMicros> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

/// What the stage holds in memory.
#[derive(Debug, Default)]
struct Live {
    loaded: bool,
    memberships: Memberships,
    triggers: Vec<Trigger>,
    definitions: BTreeMap<String, SegmentDefinition>,
    slots: HashMap<String, Slot>,
    customers: Vec<String>,
    fired: HashMap<Slot, Fired>,
    /// Every customer's values of the `percentile` arguments of every segment and trigger,
    /// and when they were gathered; `None` when no rule ranks customers.
    population: Option<(Arc<Population>, TimestampMicros)>,
    /// Every customer's profile facts by column, as last evaluated: what previews read.
    facts: Facts,
}

impl Live {
    /// One rule holding every segment's and trigger's: what the population is gathered for.
    fn ranked_rules(&self) -> Rule {
        Rule::And(
            self.memberships
                .segments()
                .map(|segment| segment.rule.clone())
                .chain(self.triggers.iter().map(|trigger| trigger.rule.clone()))
                .collect(),
        )
    }

    fn population(&self) -> Option<Arc<Population>> {
        self.population
            .as_ref()
            .map(|(population, _)| population.clone())
    }
}

impl Live {
    fn slot(&mut self, customer: &str) -> Slot {
        if let Some(slot) = self.slots.get(customer) {
            return *slot;
        }
        let slot = Slot::try_from(self.customers.len()).expect("fewer than 2^32 customers");
        self.customers.push(customer.to_owned());
        self.slots.insert(customer.to_owned(), slot);
        slot
    }
}

/// One evaluation's effect, to store and then send.
#[derive(Debug, Default)]
struct Effect {
    /// Each customer's rows.
    rows: BTreeMap<String, Vec<KvMutation>>,
    pending: Vec<Pending>,
    tally: SegmentTally,
}

/// The segment stage (its [`SegmentProcessor`] takes `profiles.changed`), and the state the
/// segment API reads.
pub struct SegmentStage {
    log: Arc<dyn EventLog>,
    kv: Arc<dyn KvStore>,
    registry: Arc<SchemaRegistry>,
    rules: ProfileRules,
    clock: Arc<dyn Clock>,
    topics: SegmentTopics,
    /// The stores `distance(store = ...)` measures to.
    stores: Stores,
    /// Customers as the profile stage of this process last wrote them, if it keeps them.
    cache: Option<CustomerCache>,
    live: Mutex<Live>,
}

impl std::fmt::Debug for SegmentStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentStage")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// Batches the stage may have in flight: one (an evaluation reads and writes the customer's
/// rows).
pub const MAX_IN_FLIGHT: usize = 1;

impl SegmentStage {
    pub fn new(
        log: Arc<dyn EventLog>,
        kv: Arc<dyn KvStore>,
        registry: Arc<SchemaRegistry>,
        rules: ProfileRules,
        clock: Arc<dyn Clock>,
        topics: SegmentTopics,
    ) -> Self {
        Self {
            log,
            kv,
            registry,
            rules,
            clock,
            topics,
            stores: Stores::default(),
            cache: None,
            live: Mutex::new(Live::default()),
        }
    }

    /// Reads customers from `cache` when it holds them (the profile stage of this process
    /// keeps it), else from the store.
    pub fn with_cache(mut self, cache: CustomerCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// `customer`'s rows as last written.
    async fn stored(&self, customer: &str) -> Result<Arc<StoredCustomer>, SegmentError> {
        if let Some(stored) = self.cache.as_ref().and_then(|cache| cache.get(customer)) {
            return Ok(stored);
        }
        Ok(Arc::new(
            load_customer(self.kv.as_ref(), &self.registry, customer).await?,
        ))
    }

    /// Measures `distance(store = ...)` to `stores`.
    pub fn with_stores(mut self, stores: Stores) -> Self {
        self.stores = stores;
        self
    }

    pub fn topics(&self) -> &SegmentTopics {
        &self.topics
    }

    /// The log the stage reads and writes.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// Loads definitions, memberships, timers and fired triggers from the store, and sends
    /// what an outbox still holds; once.
    async fn load(&self, live: &mut Live) -> Result<(), SegmentError> {
        if live.loaded {
            return Ok(());
        }
        let mut loaded = Live::default();
        for row in scan_all(self.kv.as_ref(), DEFINITIONS_TABLE, SEGMENTS_PARTITION).await? {
            let definition: SegmentDefinition =
                serde_json::from_slice(&row.value).map_err(corrupt)?;
            loaded.memberships.define(segment_of(&definition)?);
            loaded.definitions.insert(definition.id.clone(), definition);
        }
        for row in scan_all(self.kv.as_ref(), DEFINITIONS_TABLE, TRIGGERS_PARTITION).await? {
            let definition: TriggerDefinition =
                serde_json::from_slice(&row.value).map_err(corrupt)?;
            loaded.triggers.push(trigger_of(&definition)?);
        }
        let mut pending = Vec::new();
        for customer in self.kv.partition_keys(MEMBERS_TABLE).await? {
            let customer = String::from_utf8(customer.to_vec()).map_err(corrupt)?;
            let slot = loaded.slot(&customer);
            let mut fired = Vec::new();
            for row in scan_all(self.kv.as_ref(), MEMBERS_TABLE, customer.as_bytes()).await? {
                let key = row.clustering_key.as_ref();
                match key.split_first() {
                    Some((&MEMBER, segment)) => {
                        let segment = std::str::from_utf8(segment).map_err(corrupt)?;
                        loaded.memberships.restore_member(segment, slot);
                    }
                    Some((&FIRED, id)) => {
                        fired.push(uuid::Uuid::from_slice(id).map_err(corrupt)?);
                    }
                    Some((&OUTBOX, _)) => {
                        let item: Pending = serde_json::from_slice(&row.value).map_err(corrupt)?;
                        pending.push(item);
                    }
                    _ if key == WAKE => {
                        let at = micros_of(&row.value).ok_or_else(|| corrupt("wake row"))?;
                        loaded.memberships.restore_timer(slot, at);
                    }
                    _ => return Err(corrupt(format!("unknown member row {key:?}"))),
                }
            }
            if !fired.is_empty() {
                loaded.fired.insert(slot, Fired::from_ids(fired));
            }
        }
        self.send_pending(pending).await?;
        // One pass over the stored profiles: every customer's facts, and the population.
        let rules = loaded.ranked_rules();
        let mut facts = Facts::new();
        let population = self
            .pass_over_profiles(&rules, |customer, subject| {
                facts.set(loaded.slot(customer), subject);
            })
            .await?;
        loaded.population = population;
        loaded.facts = facts;
        loaded.loaded = true;
        *live = loaded;
        Ok(())
    }

    /// Sends outbox records left by a crash: those not found in their topic since where it
    /// ended before they were written.
    async fn send_pending(&self, pending: Vec<Pending>) -> Result<(), SegmentError> {
        // Where to look in each topic partition: from the earliest end any record stored.
        let mut from: HashMap<(&str, u32), u64> = HashMap::new();
        for item in &pending {
            let start = from
                .entry((&item.topic, item.partition))
                .or_insert(item.from);
            *start = (*start).min(item.from);
        }
        let mut present: HashMap<(&str, u32), std::collections::HashSet<uuid::Uuid>> =
            HashMap::new();
        for ((topic, partition), start) in from {
            let ids = ids_in(self.log.as_ref(), topic, partition, start).await?;
            present.insert((topic, partition), ids);
        }
        let resent = self
            .send_and_clear(&pending, |item| {
                present
                    .get(&(item.topic.as_str(), item.partition))
                    .is_some_and(|ids| ids.contains(&item.id))
            })
            .await?;
        if !pending.is_empty() {
            tracing::info!(resent, "segment outbox records sent after a restart");
        }
        Ok(())
    }

    /// Appends the outbox records of `items` that `sent` does not say are in their topic
    /// already, then deletes every one of them from its customer's outbox; returns how many
    /// were appended.
    async fn send_and_clear(
        &self,
        items: &[Pending],
        sent: impl Fn(&Pending) -> bool,
    ) -> Result<usize, SegmentError> {
        let mut by_topic: BTreeMap<&str, Vec<OutgoingRecord>> = BTreeMap::new();
        let mut cleared: BTreeMap<&str, Vec<KvMutation>> = BTreeMap::new();
        for item in items {
            if !sent(item) {
                by_topic
                    .entry(&item.topic)
                    .or_default()
                    .push(outgoing(item));
            }
            cleared
                .entry(&item.key)
                .or_default()
                .push(KvMutation::Delete {
                    clustering_key: outbox_key(&item.id),
                });
        }
        let appended = by_topic.values().map(Vec::len).sum();
        for (topic, records) in by_topic {
            self.log.append(topic, records).await?;
        }
        for (customer, rows) in cleared {
            self.kv
                .apply(MEMBERS_TABLE, customer.as_bytes(), rows, false)
                .await?;
        }
        Ok(appended)
    }

    /// Evaluates `customer` now, with `cause`, into `effect`.
    async fn evaluate_into(
        &self,
        live: &mut Live,
        customer: &str,
        cause: Cause,
        effect: &mut Effect,
        ends: &mut HashMap<(String, u32), u64>,
    ) -> Result<(), SegmentError> {
        let now = self.clock.now_micros();
        let slot = live.slot(customer);
        let stored = self.stored(customer).await?;
        let wake_before = live.memberships.wake_at(slot);
        let (changes, firings) = if stored.redirect.is_some() || stored.erased {
            // Merged away or erased: in no segment any more.
            live.facts.clear(slot);
            (live.memberships.forget(slot, now, cause), Vec::new())
        } else {
            let profile = stored.state.profile(&self.rules, now);
            let population = live.population();
            let subject = Subject {
                profile: &profile,
                journal: &stored.journal,
                now,
                time_zone: time_zone_of(&profile),
                population: population.as_deref(),
                stores: Some(&self.stores),
            };
            if stored.journal.is_empty() {
                live.facts.clear(slot);
            } else {
                live.facts.set(slot, &subject);
            }
            let changes = live.memberships.evaluate(slot, &subject, cause);
            let fired = live.fired.entry(slot).or_default();
            let mut firings: Vec<Firing> = Vec::new();
            let mut wake: Option<TimestampMicros> = None;
            for trigger in &live.triggers {
                let (firing, next) = fired.evaluate_timed(trigger, customer, &subject, now);
                firings.extend(firing);
                if let Some(next) = next {
                    wake = Some(wake.map_or(next, |wake| wake.min(next)));
                }
            }
            if let Some(wake) = wake {
                live.memberships.wake_no_later_than(slot, wake);
            }
            (changes, firings)
        };
        effect.tally.evaluated += 1;
        let rows = effect.rows.entry(customer.to_owned()).or_default();
        for change in &changes {
            if change.entered {
                effect.tally.entered += 1;
                rows.push(KvMutation::Put {
                    clustering_key: member_key(&change.segment),
                    value: Bytes::copy_from_slice(&change.version.to_be_bytes()),
                });
            } else {
                effect.tally.left += 1;
                rows.push(KvMutation::Delete {
                    clustering_key: member_key(&change.segment),
                });
            }
        }
        let wake_after = live.memberships.wake_at(slot);
        if wake_before != wake_after {
            rows.push(match wake_after {
                Some(after) => KvMutation::Put {
                    clustering_key: Bytes::from_static(WAKE),
                    value: Bytes::copy_from_slice(&after.to_be_bytes()),
                },
                None => KvMutation::Delete {
                    clustering_key: Bytes::from_static(WAKE),
                },
            });
        }
        // What to send: each change and firing, through the customer's outbox.
        let mut outgoing: Vec<(&str, uuid::Uuid, String)> = Vec::new();
        for change in changes {
            let record = membership_record(customer, &change);
            let value = serde_json::to_string(&record).expect("a change serialises");
            outgoing.push((&self.topics.changes, record.id, value));
        }
        for firing in firings {
            effect.tally.fired += 1;
            rows.push(KvMutation::Put {
                clustering_key: fired_key(&firing.id),
                value: Bytes::new(),
            });
            let record = FiringRecord {
                id: firing.id,
                trigger: firing.trigger,
                customer: firing.customer,
                period: firing.period,
                at: firing.at,
            };
            let value = serde_json::to_string(&record).expect("a firing serialises");
            outgoing.push((&self.topics.triggers, record.id, value));
        }
        for (topic, id, value) in outgoing {
            let item = self.pending(topic, id, customer, value, now, ends).await?;
            rows.push(KvMutation::Put {
                clustering_key: outbox_key(&item.id),
                value: Bytes::from(serde_json::to_vec(&item).expect("serialises")),
            });
            effect.pending.push(item);
        }
        Ok(())
    }

    /// An outbox record for `topic`, with where its partition ends now.
    async fn pending(
        &self,
        topic: &str,
        id: uuid::Uuid,
        customer: &str,
        value: String,
        now: TimestampMicros,
        ends: &mut HashMap<(String, u32), u64>,
    ) -> Result<Pending, SegmentError> {
        let partition = partition_for_key(customer.as_bytes(), self.topics.output_partitions);
        let place = (topic.to_owned(), partition);
        let from = match ends.get(&place) {
            Some(from) => *from,
            None => {
                let (_, end) = self.log.watermarks(topic, partition).await?;
                ends.insert(place, end);
                end
            }
        };
        Ok(Pending {
            topic: topic.to_owned(),
            partition,
            from,
            id,
            key: customer.to_owned(),
            value,
            timestamp_millis: now.div_euclid(1_000),
        })
    }

    /// Stores `effect` (durably), then sends its records and empties the outboxes.
    async fn commit(&self, effect: Effect) -> Result<SegmentTally, SegmentError> {
        let count = effect.rows.len();
        for (at, (customer, rows)) in effect.rows.into_iter().enumerate() {
            // The last write makes every one before it durable too.
            self.kv
                .apply(MEMBERS_TABLE, customer.as_bytes(), rows, at + 1 == count)
                .await?;
        }
        self.send_and_clear(&effect.pending, |_| false).await?;
        Ok(effect.tally)
    }

    /// Evaluates each of `customers` now, with `cause`, and stores and sends what changed.
    async fn evaluate_customers(
        &self,
        live: &mut Live,
        customers: Vec<(String, Cause)>,
    ) -> Result<SegmentTally, SegmentError> {
        let mut effect = Effect::default();
        let mut ends = HashMap::new();
        for (customer, cause) in customers {
            self.evaluate_into(live, &customer, cause, &mut effect, &mut ends)
                .await?;
        }
        self.commit(effect).await
    }

    /// Wakes the customers whose timers are due now: evaluates them (cause: the timer).
    pub async fn wake_due(&self) -> Result<SegmentTally, SegmentError> {
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        let due = live.memberships.due(self.clock.now_micros());
        let customers: Vec<(String, Cause)> = due
            .into_iter()
            .map(|(_, slot)| (live.customers[slot as usize].clone(), Cause::Timer))
            .collect();
        self.evaluate_customers(&mut live, customers).await
    }

    /// Evaluates every customer with a profile (a definition changed).
    /// Evaluates every customer with a profile (a definition or the population changed), a
    /// thousand at a time, each thousand under the lock on its own: batches of the stage, wake
    /// timers and reads of the API go on in between (evaluating a customer twice changes
    /// nothing the second time).
    async fn refresh_all(&self) -> Result<SegmentTally, SegmentError> {
        let customers = self.profile_customers().await?;
        let mut tally = SegmentTally::default();
        for chunk in customers.chunks(1_000) {
            let customers: Vec<(String, Cause)> = chunk
                .iter()
                .map(|customer| (customer.clone(), Cause::Refresh))
                .collect();
            let mut live = self.live.lock().await;
            self.load(&mut live).await?;
            tally += self.evaluate_customers(&mut live, customers).await?;
        }
        Ok(tally)
    }

    /// Writes (`Some`) or deletes (`None`) definition `id` of `partition`, durably.
    async fn write_definition(
        &self,
        partition: &[u8],
        id: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), SegmentError> {
        let clustering_key = Bytes::from(id.to_owned());
        let mutation = match value {
            Some(value) => KvMutation::Put {
                clustering_key,
                value: Bytes::from(value),
            },
            None => KvMutation::Delete { clustering_key },
        };
        self.kv
            .apply(DEFINITIONS_TABLE, partition, vec![mutation], true)
            .await?;
        Ok(())
    }

    /// Defines segment `id` (a new version if it exists) and evaluates every customer under
    /// it; returns the definition stored.
    pub async fn define_segment(
        &self,
        id: &str,
        rule_text: &str,
        purpose: Option<String>,
    ) -> Result<SegmentDefinition, DefinitionError> {
        self.define(id, rule_text, purpose, None).await
    }

    /// Defines a new segment `id` (an error if it exists).
    pub async fn create_segment(
        &self,
        id: &str,
        rule_text: &str,
        purpose: Option<String>,
    ) -> Result<SegmentDefinition, DefinitionError> {
        self.define(id, rule_text, purpose, Some(false)).await
    }

    /// A new version of segment `id` (an error if there is none).
    pub async fn update_segment(
        &self,
        id: &str,
        rule_text: &str,
        purpose: Option<String>,
    ) -> Result<SegmentDefinition, DefinitionError> {
        self.define(id, rule_text, purpose, Some(true)).await
    }

    /// Defines segment `id`; `exists` says whether it must exist already (`None`: either).
    async fn define(
        &self,
        id: &str,
        rule_text: &str,
        purpose: Option<String>,
        exists: Option<bool>,
    ) -> Result<SegmentDefinition, DefinitionError> {
        check_id("id", id)?;
        let rule = parse_rule(rule_text)?;
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        match (exists, live.definitions.contains_key(id)) {
            (Some(true), false) => return Err(DefinitionError::Unknown(id.to_owned())),
            (Some(false), true) => return Err(DefinitionError::Exists(id.to_owned())),
            _ => {}
        }
        let version = live
            .definitions
            .get(id)
            .map_or(1, |definition| definition.version + 1);
        let definition = SegmentDefinition {
            id: id.to_owned(),
            version,
            rule: rule.to_string(),
            purpose: purpose.clone(),
        };
        self.write_definition(
            SEGMENTS_PARTITION,
            id,
            Some(serde_json::to_vec(&definition).expect("serialises")),
        )
        .await?;
        live.memberships.define(Segment {
            id: id.to_owned(),
            version,
            rule,
            purpose,
        });
        live.definitions.insert(id.to_owned(), definition.clone());
        drop(live);
        self.rules_changed().await?;
        Ok(definition)
    }

    /// Deletes segment `id`; its members are dropped (no exits are sent: the segment is gone).
    pub async fn delete_segment(&self, id: &str) -> Result<SegmentDefinition, DefinitionError> {
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        let definition = live
            .definitions
            .remove(id)
            .ok_or_else(|| DefinitionError::Unknown(id.to_owned()))?;
        let members: Vec<Slot> = live
            .memberships
            .members(id)
            .map(|members| members.iter().collect())
            .unwrap_or_default();
        for slot in members {
            let customer = live.customers[slot as usize].clone();
            self.kv
                .apply(
                    MEMBERS_TABLE,
                    customer.as_bytes(),
                    vec![KvMutation::Delete {
                        clustering_key: member_key(id),
                    }],
                    false,
                )
                .await
                .map_err(SegmentError::from)?;
        }
        self.write_definition(SEGMENTS_PARTITION, id, None).await?;
        live.memberships.delete(id);
        Ok(definition)
    }

    /// Defines trigger `id` and evaluates every customer (it fires only for the present).
    pub async fn define_trigger(
        &self,
        definition: TriggerDefinition,
    ) -> Result<TriggerDefinition, DefinitionError> {
        check_id("id", &definition.id)?;
        let rule = parse_rule(&definition.rule)?;
        let period = period_of(&definition.period)?;
        let definition = TriggerDefinition {
            rule: rule.to_string(),
            ..definition
        };
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        self.write_definition(
            TRIGGERS_PARTITION,
            &definition.id,
            Some(serde_json::to_vec(&definition).expect("serialises")),
        )
        .await?;
        live.triggers.retain(|trigger| trigger.id != definition.id);
        live.triggers.push(Trigger {
            id: definition.id.clone(),
            rule,
            period,
            purpose: definition.purpose.clone(),
        });
        drop(live);
        self.rules_changed().await?;
        Ok(definition)
    }

    /// Makes the stored triggers those of `file`: new and changed ones are defined (every
    /// customer evaluated once), ones no longer there removed; nothing happens for a file
    /// that matches what is stored. Returns how many were defined and removed.
    pub async fn configure_triggers(
        &self,
        file: &TriggersFile,
    ) -> Result<(usize, usize), DefinitionError> {
        let stored: BTreeMap<String, TriggerDefinition> =
            scan_all(self.kv.as_ref(), DEFINITIONS_TABLE, TRIGGERS_PARTITION)
                .await?
                .iter()
                .map(|row| serde_json::from_slice::<TriggerDefinition>(&row.value))
                .map(|definition| definition.map(|d| (d.id.clone(), d)))
                .collect::<Result<_, _>>()
                .map_err(|error| DefinitionError::Stage(corrupt(error)))?;
        let mut removed = 0;
        for id in stored.keys() {
            if !file.trigger.iter().any(|trigger| &trigger.id == id) {
                self.write_definition(TRIGGERS_PARTITION, id, None).await?;
                let mut live = self.live.lock().await;
                live.triggers.retain(|trigger| &trigger.id != id);
                removed += 1;
            }
        }
        let mut defined = 0;
        for trigger in &file.trigger {
            let canonical = TriggerDefinition {
                rule: parse_rule(&trigger.rule)?.to_string(),
                ..trigger.clone()
            };
            if stored.get(&trigger.id) != Some(&canonical) {
                self.define_trigger(canonical).await?;
                defined += 1;
            }
        }
        Ok((defined, removed))
    }

    /// The segments defined, by id.
    pub async fn definitions(&self) -> Result<Vec<SegmentDefinition>, SegmentError> {
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        Ok(live.definitions.values().cloned().collect())
    }

    /// The members of segment `id`, by customer id; `None` if there is no such segment.
    pub async fn members(&self, id: &str) -> Result<Option<Vec<String>>, SegmentError> {
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        Ok(live.memberships.members(id).map(|members| {
            let mut customers: Vec<String> = members
                .iter()
                .map(|slot| live.customers[slot as usize].clone())
                .collect();
            customers.sort_unstable();
            customers
        }))
    }

    /// How many members segment `id` has; `None` if there is no such segment.
    pub async fn count(&self, id: &str) -> Result<Option<u64>, SegmentError> {
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        Ok(live.memberships.members(id).map(|members| members.len()))
    }

    /// Segment `id`'s definition.
    pub async fn definition(&self, id: &str) -> Result<Option<SegmentDefinition>, SegmentError> {
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        Ok(live.definitions.get(id).cloned())
    }

    /// Whether `customer` is a member of segment `id`, and the segment's version; `None` if
    /// there is no such segment.
    pub async fn is_member(
        &self,
        id: &str,
        customer: &str,
    ) -> Result<Option<(bool, u32)>, SegmentError> {
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        let Some(definition) = live.definitions.get(id) else {
            return Ok(None);
        };
        let member = live.slots.get(customer).is_some_and(|slot| {
            live.memberships
                .members(id)
                .is_some_and(|members| members.contains(*slot))
        });
        Ok(Some((member, definition.version)))
    }

    /// The stored profile of `customer` as a subject now, given to `f`; `None` if the customer
    /// has no profile (never seen, merged away or erased).
    async fn with_subject<T>(
        &self,
        customer: &str,
        population: Option<&Population>,
        f: impl FnOnce(&Subject<'_>) -> T,
    ) -> Result<Option<T>, SegmentError> {
        let stored = self.stored(customer).await?;
        if stored.redirect.is_some() || stored.erased || stored.journal.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now_micros();
        let profile = stored.state.profile(&self.rules, now);
        Ok(Some(f(&Subject {
            profile: &profile,
            journal: &stored.journal,
            now,
            time_zone: time_zone_of(&profile),
            population,
            stores: Some(&self.stores),
        })))
    }

    /// Why `customer` is or is not in segment `id`: whether it is (as kept), whether it has the
    /// segment's consent, and the rule explained now. `Ok(None)`: no such segment or customer.
    pub async fn explain(
        &self,
        id: &str,
        customer: &str,
    ) -> Result<Option<(bool, bool, Explanation)>, SegmentError> {
        let Some((member, _)) = self.is_member(id, customer).await? else {
            return Ok(None);
        };
        let Some(definition) = self.definition(id).await? else {
            return Ok(None);
        };
        let segment = segment_of(&definition)?;
        let population = self.live.lock().await.population();
        self.with_subject(customer, population.as_deref(), |subject| {
            (
                member,
                consented(segment.purpose.as_deref(), subject.profile),
                explain(&segment.rule, subject),
            )
        })
        .await
    }

    /// How many customers with a profile the rule (with its consent purpose) holds for now, of
    /// how many, and a sample of `sample` of them (sorted by id), changing nothing. Decided
    /// over the facts table; customers it cannot decide (conditions on the journal, locations,
    /// birthdays) are evaluated one by one from their stored profiles.
    pub async fn preview(
        &self,
        rule: &Rule,
        purpose: Option<&str>,
        sample: usize,
    ) -> Result<Preview, SegmentError> {
        let (mut preview, open) = {
            let mut live = self.live.lock().await;
            self.load(&mut live).await?;
            let decided = live.facts.decide(rule, purpose, self.clock.now_micros());
            let mut preview = Preview {
                customers: decided.customers,
                members: decided.members.count_ones(..) as u64,
                sample: Vec::new(),
            };
            preview.sample.extend(
                decided
                    .members
                    .ones()
                    .take(sample)
                    .map(|slot| live.customers[slot].clone()),
            );
            let open: Vec<String> = decided
                .open
                .ones()
                .map(|slot| live.customers[slot].clone())
                .collect();
            (preview, open)
        };
        self.evaluate_stored(open, rule, purpose, sample, &mut preview, false)
            .await?;
        preview.sample.sort_unstable();
        Ok(preview)
    }

    /// [`Self::preview`] by evaluating every stored profile one by one, with no use of the
    /// facts table: a full pass over the store, for checking the live answers.
    pub async fn preview_from_store(
        &self,
        rule: &Rule,
        purpose: Option<&str>,
        sample: usize,
    ) -> Result<Preview, SegmentError> {
        let mut preview = Preview::default();
        let customers = self.profile_customers().await?;
        self.evaluate_stored(customers, rule, purpose, sample, &mut preview, true)
            .await?;
        preview.sample.sort_unstable();
        Ok(preview)
    }

    /// Evaluates `rule` for each of `customers` from their stored profiles into `preview`
    /// (counting them among its customers if `count_customers`).
    async fn evaluate_stored(
        &self,
        customers: Vec<String>,
        rule: &Rule,
        purpose: Option<&str>,
        sample: usize,
        preview: &mut Preview,
        count_customers: bool,
    ) -> Result<(), SegmentError> {
        if customers.is_empty() {
            return Ok(());
        }
        // A rule that ranks customers first gathers the population it ranks them among.
        let population = self.gather_population(rule).await?;
        let population = population.as_ref().map(|(population, _)| &**population);
        for customer in customers {
            let holds = self
                .with_subject(&customer, population, |subject| {
                    consented(purpose, subject.profile)
                        && evaluate(rule, subject).holds == Some(true)
                })
                .await?;
            let Some(holds) = holds else {
                continue;
            };
            if count_customers {
                preview.customers += 1;
            }
            if holds {
                preview.members += 1;
                if preview.sample.len() < sample {
                    preview.sample.push(customer);
                }
            }
        }
        Ok(())
    }

    /// Every customer with rows in the profile store, by id.
    async fn profile_customers(&self) -> Result<Vec<String>, SegmentError> {
        let mut customers: Vec<String> = self
            .kv
            .partition_keys(kinfold_profile::stage::PROFILES_TABLE)
            .await?
            .iter()
            .filter_map(|key| String::from_utf8(key.to_vec()).ok())
            .collect();
        customers.sort_unstable();
        Ok(customers)
    }

    /// The population `rule`'s percentiles rank customers among, gathered now over every
    /// stored profile; `None` if it has none.
    async fn gather_population(
        &self,
        rule: &Rule,
    ) -> Result<Option<(Arc<Population>, TimestampMicros)>, SegmentError> {
        if Population::of(rule).is_empty() {
            return Ok(None);
        }
        self.pass_over_profiles(rule, |_, _| {}).await
    }

    /// Gives `each` every stored profile as a subject now, and gathers the population of
    /// `rule`'s percentiles over them; `None` if it has none.
    async fn pass_over_profiles(
        &self,
        rule: &Rule,
        mut each: impl FnMut(&str, &Subject<'_>),
    ) -> Result<Option<(Arc<Population>, TimestampMicros)>, SegmentError> {
        let mut population = Population::of(rule);
        let at = self.clock.now_micros();
        for customer in self.profile_customers().await? {
            self.with_subject(&customer, None, |subject| {
                each(&customer, subject);
                population.add(subject);
            })
            .await?;
        }
        population.finish();
        Ok((!population.is_empty()).then(|| (Arc::new(population), at)))
    }

    /// Gathers the population again and evaluates every customer under it (cause: refresh),
    /// when some rule ranks customers and the last gathering is `every` old or more; else does
    /// nothing. The schedule of population-relative conditions (see `docs/segments.md`).
    pub async fn refresh_population_if_due(
        &self,
        every: TimestampMicros,
    ) -> Result<SegmentTally, SegmentError> {
        let due = {
            let mut live = self.live.lock().await;
            self.load(&mut live).await?;
            live.population
                .as_ref()
                .is_some_and(|(_, at)| self.clock.now_micros() - at >= every)
        };
        if !due {
            return Ok(SegmentTally::default());
        }
        if self.gather_for_current_rules().await? {
            self.refresh_all().await
        } else {
            Ok(SegmentTally::default())
        }
    }

    /// After a definition: the population gathered again for the rules as they are now, and
    /// every customer evaluated.
    async fn rules_changed(&self) -> Result<SegmentTally, SegmentError> {
        self.gather_for_current_rules().await?;
        self.refresh_all().await
    }

    /// Gathers the population for the rules as they are now, with no lock held while it reads
    /// every profile; whether any rule ranks customers.
    async fn gather_for_current_rules(&self) -> Result<bool, SegmentError> {
        let rules = {
            let mut live = self.live.lock().await;
            self.load(&mut live).await?;
            live.ranked_rules()
        };
        let population = self.gather_population(&rules).await?;
        let ranks = population.is_some();
        self.live.lock().await.population = population;
        Ok(ranks)
    }

    /// When `customer` is to be evaluated again with no event.
    pub async fn wake_at(&self, customer: &str) -> Result<Option<TimestampMicros>, SegmentError> {
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        Ok(live
            .slots
            .get(customer)
            .and_then(|slot| live.memberships.wake_at(*slot)))
    }
}

fn membership_record(customer: &str, change: &Change) -> MembershipRecord {
    let (cause, event_id) = match change.cause {
        Cause::Event(event_id) => ("event", Some(event_id)),
        Cause::Timer => ("timer", None),
        Cause::Refresh => ("refresh", None),
    };
    let id = uuid::Uuid::new_v5(
        &CHANGE_NAMESPACE,
        format!(
            "{}\u{0}{}\u{0}{customer}\u{0}{}\u{0}{}",
            change.segment, change.version, change.entered, change.at
        )
        .as_bytes(),
    );
    MembershipRecord {
        id,
        segment: change.segment.clone(),
        version: change.version,
        customer: customer.to_owned(),
        entered: change.entered,
        at: change.at,
        cause: cause.to_owned(),
        event_id,
    }
}

fn outgoing(item: &Pending) -> OutgoingRecord {
    OutgoingRecord {
        key: Some(Bytes::from(item.key.clone())),
        value: Bytes::from(item.value.clone()),
        headers: vec![("id".into(), Bytes::from(item.id.to_string()))],
        timestamp_millis: item.timestamp_millis,
        partition: Some(item.partition),
    }
}

/// The ids (`id` header) of the records of `topic`/`partition` from `from` on.
async fn ids_in(
    log: &dyn EventLog,
    topic: &str,
    partition: u32,
    mut from: u64,
) -> Result<std::collections::HashSet<uuid::Uuid>, SegmentError> {
    let mut ids = std::collections::HashSet::new();
    loop {
        let records = log.read(topic, partition, from, 1_000).await?;
        let Some(last) = records.last() else {
            return Ok(ids);
        };
        from = last.offset + 1;
        ids.extend(records.iter().filter_map(|record| {
            let id = std::str::from_utf8(record.header("id")?).ok()?;
            id.parse::<uuid::Uuid>().ok()
        }));
    }
}

/// Every row of `table`/`partition`.
async fn scan_all(
    kv: &dyn KvStore,
    table: &str,
    partition: &[u8],
) -> Result<Vec<kinfold_core::ports::KvRow>, SegmentError> {
    let mut rows = Vec::new();
    let mut from = Vec::new();
    loop {
        let page = kv.scan_partition(table, partition, &from, 1_000).await?;
        let more = page.len() == 1_000;
        if let Some(last) = page.last() {
            from = last.clustering_key.to_vec();
            from.push(0);
        }
        rows.extend(page);
        if !more {
            return Ok(rows);
        }
    }
}

/// The stage's [`Processor`] of `profiles.changed` (run it with [`MAX_IN_FLIGHT`]), sharing
/// the stage with the timer loop and the API.
#[derive(Debug, Clone)]
pub struct SegmentProcessor(pub Arc<SegmentStage>);

impl Processor for SegmentProcessor {
    type Tally = SegmentTally;
    type Error = SegmentError;

    async fn process(
        &self,
        _partition: &TopicPartition,
        records: &[LogRecord],
    ) -> Result<SegmentTally, SegmentError> {
        self.0.take_notices(records).await
    }
}

impl SegmentStage {
    /// Evaluates the customers that `records` of `profiles.changed` name.
    pub async fn take_notices(&self, records: &[LogRecord]) -> Result<SegmentTally, SegmentError> {
        let mut unreadable = 0;
        // Each customer once, with the last event the batch says it took in.
        let mut customers: BTreeMap<String, Cause> = BTreeMap::new();
        for record in records {
            match ProfileChanged::from_json(&record.value) {
                Ok(notice) => {
                    let cause = notice.event_id.map_or(Cause::Refresh, Cause::Event);
                    customers.insert(notice.customer, cause);
                }
                Err(error) => {
                    tracing::error!(offset = record.offset, %error, "profiles.changed record unreadable; skipped");
                    unreadable += 1;
                }
            }
        }
        let mut live = self.live.lock().await;
        self.load(&mut live).await?;
        let mut tally = self
            .evaluate_customers(&mut live, customers.into_iter().collect())
            .await?;
        tally.unreadable += unreadable;
        Ok(tally)
    }
}

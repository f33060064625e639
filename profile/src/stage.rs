//! The profile stage: reads `events.resolved`, keeps each customer's journal and profile in
//! the key-value store, and follows merges, splits and erasures (see `docs/profile.md`).
//!
//! One partition of the [`PROFILES_TABLE`] per customer (its id as text) holds, in one atomic
//! write per batch:
//! - `j` + event time + event id: the journal, each event's canonical frame as
//!   `events.resolved` carried it;
//! - `s`: the folded [`ProfileState`] ([`encode_state`]);
//! - `p` + source partition: the next offset of that `events.resolved` partition the customer
//!   has taken in, so that a batch replayed after a crash changes nothing (the positions are
//!   stored with the data they account for);
//! - `r`: the customer it was merged into, once absorbed; `e`: erased;
//! - `m` + event id: an event that a split moved away before it arrived here (its customer's
//!   hand-over still on the way), and where it goes when it comes.
//!
//! A merge's marker makes the absorbed customer's events go to the survivor: they are appended
//! to `events.resolved` under the survivor's key (and folded by whoever owns that partition)
//! before the absorbed customer's rows are dropped. An event that left a customer (a split) is
//! removed from its journal and appended under its new customer; one that has not arrived yet
//! (the stage lagging behind a merge and its split) leaves a tombstone that sends it on when it
//! does. Appends come first and the journal is idempotent on event id, so a crash in between
//! repeats them harmlessly.

use crate::cache::CustomerCache;
use crate::fold::{ProfileState, add_and_fold, fold};
use crate::journal::{Added, Journal, journal_key};
use bytes::Bytes;
use kinfold_core::ports::{
    EventLog, KvError, KvMutation, KvStore, LogError, LogRecord, OutgoingRecord, TopicPartition,
};
use kinfold_core::stage::Processor;
use kinfold_core::time::TimestampMicros;
use kinfold_core::{CanonicalEvent, EventId};
use kinfold_identity::model::CustomerId;
use kinfold_identity::records::{ResolvedMarker, resolved_record};
use kinfold_schemas::SchemaRegistry;
use kinfold_schemas::codec::decode_framed_canonical;
use std::collections::BTreeMap;
use std::ops::AddAssign;
use std::sync::Arc;

/// The key-value table of customers' journals and profiles.
pub const PROFILES_TABLE: &str = "profiles";

const JOURNAL: u8 = b'j';
const STATE: &[u8] = b"s";
const POSITION: u8 = b'p';
const REDIRECT: &[u8] = b"r";
const ERASED: &[u8] = b"e";
const MOVED: u8 = b'm';

/// A journal row's clustering key: `j`, the event time (sign bit flipped, big-endian, so that
/// byte order is time order), the event id.
pub fn journal_row_key(event_time: TimestampMicros, event_id: &EventId) -> Bytes {
    let mut key = Vec::with_capacity(25);
    key.push(JOURNAL);
    key.extend_from_slice(&((event_time as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(event_id.as_bytes());
    Bytes::from(key)
}

fn moved_key(event_id: &EventId) -> Bytes {
    let mut key = Vec::with_capacity(17);
    key.push(MOVED);
    key.extend_from_slice(event_id.as_bytes());
    Bytes::from(key)
}

fn position_key(partition: u32) -> Bytes {
    let mut key = vec![POSITION];
    key.extend_from_slice(&partition.to_be_bytes());
    Bytes::from(key)
}

/// What the stage counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfileTally {
    /// Events added to a journal.
    pub folded: u64,
    /// Of those, events that came before one already there (the journal folded again).
    pub late: u64,
    /// Events a journal already held.
    pub duplicates: u64,
    /// Records taken in before (a batch replayed).
    pub replayed: u64,
    /// Events appended under another customer (merges, splits, absorbed customers' late ones).
    pub transferred: u64,
    pub markers: u64,
    /// Records that could not be read (no customer key, not a frame, not a marker).
    pub unreadable: u64,
}

impl AddAssign for ProfileTally {
    fn add_assign(&mut self, other: Self) {
        self.folded += other.folded;
        self.late += other.late;
        self.duplicates += other.duplicates;
        self.replayed += other.replayed;
        self.transferred += other.transferred;
        self.markers += other.markers;
        self.unreadable += other.unreadable;
    }
}

/// Why a batch could not be finished (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("key-value store: {0}")]
    Kv(#[from] KvError),
    #[error("stored profile of {customer} is unreadable: {reason}")]
    Corrupt { customer: String, reason: String },
}

/// A customer's rows, as loaded.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StoredCustomer {
    pub journal: Journal,
    /// The journal's frames, by event id (what transfers append).
    pub frames: BTreeMap<EventId, Bytes>,
    pub state: ProfileState,
    pub positions: BTreeMap<u32, u64>,
    pub redirect: Option<CustomerId>,
    pub erased: bool,
    /// Events moved away before they arrived, and the customer each goes to (none: nobody).
    pub moved: BTreeMap<EventId, Option<CustomerId>>,
}

fn corrupt(customer: &str, reason: String) -> ProfileError {
    ProfileError::Corrupt {
        customer: customer.to_owned(),
        reason,
    }
}

/// Reads the rows of `customer` from clustering key `from` on into `stored`; returns the
/// state row, if read.
async fn read_rows(
    kv: &dyn KvStore,
    registry: &SchemaRegistry,
    customer: &str,
    mut from: Vec<u8>,
    stored: &mut StoredCustomer,
) -> Result<Option<Bytes>, ProfileError> {
    let corrupt = |reason: String| corrupt(customer, reason);
    let mut state = None;
    loop {
        let rows = kv
            .scan_partition(PROFILES_TABLE, customer.as_bytes(), &from, 1_000)
            .await?;
        let Some(last) = rows.last() else {
            break;
        };
        from = last.clustering_key.to_vec();
        from.push(0);
        let more = rows.len() == 1_000;
        for row in rows {
            let key = row.clustering_key.as_ref();
            match key.first() {
                Some(&JOURNAL) => {
                    let event = decode_framed_canonical(&row.value, registry)
                        .map_err(|error| corrupt(format!("journal row: {error}")))?;
                    stored.frames.insert(event.event_id, row.value.clone());
                    stored.journal.add(event);
                }
                Some(&POSITION) if key.len() == 5 => {
                    let partition = u32::from_be_bytes(key[1..5].try_into().expect("4 bytes"));
                    let offset = u64::from_be_bytes(
                        row.value
                            .as_ref()
                            .try_into()
                            .map_err(|_| corrupt("position row".into()))?,
                    );
                    stored.positions.insert(partition, offset);
                }
                Some(&MOVED) if key.len() == 17 => {
                    let event_id = EventId(uuid::Uuid::from_bytes(
                        key[1..].try_into().expect("16 bytes"),
                    ));
                    let to = match std::str::from_utf8(&row.value) {
                        Ok("") => None,
                        Ok(text) => Some(CustomerId(
                            text.parse().map_err(|_| corrupt("moved row".into()))?,
                        )),
                        Err(_) => return Err(corrupt("moved row".into())),
                    };
                    stored.moved.insert(event_id, to);
                }
                _ if key == STATE => state = Some(row.value),
                _ if key == REDIRECT => {
                    let text = std::str::from_utf8(&row.value)
                        .map_err(|_| corrupt("redirect row".into()))?;
                    stored.redirect = Some(CustomerId(
                        text.parse().map_err(|_| corrupt("redirect row".into()))?,
                    ));
                }
                _ if key == ERASED => stored.erased = true,
                _ => return Err(corrupt(format!("unknown row {key:?}"))),
            }
        }
        if !more {
            break;
        }
    }
    Ok(state)
}

/// The first byte of a state row: which encoding follows (a JSON state, as earlier versions
/// wrote it, starts with `{`).
const STATE_FORMAT: u8 = 1;

/// The stored form of a folded state: a format byte, then postcard (compact and
/// deterministic; reading it is what a `GetProfile` spends most on, and JSON took four times
/// as long).
pub fn encode_state(state: &ProfileState) -> Vec<u8> {
    let mut bytes = vec![STATE_FORMAT];
    postcard::to_io(state, &mut bytes).expect("a state serialises");
    bytes
}

/// Why a state row does not read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state row format {0:?}, expected {STATE_FORMAT}")]
    Format(Option<u8>),
    #[error("state row: {0}")]
    Decode(#[from] postcard::Error),
    #[error("state row: {0} bytes after the state")]
    Trailing(usize),
}

/// A state row read back.
pub fn decode_state(bytes: &[u8]) -> Result<ProfileState, StateError> {
    match bytes.split_first() {
        Some((&STATE_FORMAT, rest)) => {
            let (state, trailing) = postcard::take_from_bytes(rest)?;
            if trailing.is_empty() {
                Ok(state)
            } else {
                Err(StateError::Trailing(trailing.len()))
            }
        }
        other => Err(StateError::Format(other.map(|(first, _)| *first))),
    }
}

/// The state row, if it reads: one that does not (written in an older encoding, say) is only a
/// cache of the journal's fold, so it is folded again.
fn readable_state(customer: &str, bytes: &[u8]) -> Option<ProfileState> {
    match decode_state(bytes) {
        Ok(state) => Some(state),
        Err(error) => {
            tracing::warn!(customer, %error, "stored profile state unreadable (an older encoding?); folding the journal again");
            None
        }
    }
}

/// Reads every row of `customer` from `kv`.
pub async fn load_customer(
    kv: &dyn KvStore,
    registry: &SchemaRegistry,
    customer: &str,
) -> Result<StoredCustomer, ProfileError> {
    let mut stored = StoredCustomer::default();
    let state = read_rows(kv, registry, customer, Vec::new(), &mut stored).await?;
    stored.state = match state.and_then(|bytes| readable_state(customer, &bytes)) {
        Some(state) => state,
        None => fold(stored.journal.events()),
    };
    Ok(stored)
}

/// What a read of the profile as it is now needs: every row but the journal's and the
/// tombstones', which are left empty (rows sort `e` < `j` < `m` < `p` < `r` < `s`). Without a
/// folded state row, every row. (An erased customer has no state row: erasure deletes it, and
/// nothing folds under an erased customer again.)
pub async fn load_customer_folded(
    kv: &dyn KvStore,
    registry: &SchemaRegistry,
    customer: &str,
) -> Result<StoredCustomer, ProfileError> {
    let mut stored = StoredCustomer::default();
    let state = read_rows(kv, registry, customer, vec![POSITION], &mut stored).await?;
    match state.and_then(|bytes| readable_state(customer, &bytes)) {
        Some(state) => {
            stored.state = state;
            Ok(stored)
        }
        None => load_customer(kv, registry, customer).await,
    }
}

/// Batches the stage may have in flight: one. A batch reads each customer's rows, folds and
/// writes them back, so two batches of a partition at once would lose one's writes, and one
/// finishing before the one before it would make the earlier one's records look taken in.
pub const MAX_IN_FLIGHT: usize = 1;

/// The profile stage's processor (run it with [`MAX_IN_FLIGHT`]).
pub struct ProfileProcessor {
    log: Arc<dyn EventLog>,
    kv: Arc<dyn KvStore>,
    registry: Arc<SchemaRegistry>,
    /// `events.resolved`.
    topic: String,
    /// Where to say which customers changed (`profiles.changed`), if anywhere.
    notices: Option<String>,
    /// Customers as last written, if this process is their one writer.
    cache: Option<CustomerCache>,
}

/// What `profiles.changed` carries, keyed by the customer: a customer's profile may have
/// changed (folded an event, was merged away, erased, had an event moved out). Sent at least
/// once for every customer a batch touched, after its rows are durable, so a reader that
/// loads the customer then sees the change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProfileChanged {
    pub customer: String,
    /// The last event of the batch that the customer took in, if any (else a marker).
    pub event_id: Option<EventId>,
}

impl ProfileChanged {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a notice serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl std::fmt::Debug for ProfileProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileProcessor")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// One customer's work in a batch.
struct Work {
    stored: StoredCustomer,
    mutations: Vec<KvMutation>,
    touched_state: bool,
    /// The next offset of the batch's partition taken in.
    next: Option<u64>,
    /// The last event taken in.
    last_event: Option<EventId>,
}

impl ProfileProcessor {
    pub fn new(
        log: Arc<dyn EventLog>,
        kv: Arc<dyn KvStore>,
        registry: Arc<SchemaRegistry>,
        topic: impl Into<String>,
    ) -> Self {
        Self {
            log,
            kv,
            registry,
            topic: topic.into(),
            notices: None,
            cache: None,
        }
    }

    /// Keeps the customers it writes in `cache`, and takes them from there (see
    /// [`CustomerCache`]: only where this process is their one writer).
    pub fn with_cache(mut self, cache: CustomerCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Says which customers changed on `topic` (`profiles.changed`), after each batch.
    pub fn with_notices(mut self, topic: impl Into<String>) -> Self {
        self.notices = Some(topic.into());
        self
    }

    /// The record that gives an event of `from` to `to`.
    fn transfer(
        frame: &Bytes,
        from: &str,
        to: CustomerId,
        timestamp_millis: i64,
    ) -> OutgoingRecord {
        tracing::debug!(from, %to, "event transferred");
        resolved_record(frame, to, timestamp_millis)
    }

    /// Takes `record` in for `customer`.
    fn take(
        &self,
        customer: &str,
        work: &mut Work,
        record: &LogRecord,
        transfers: &mut Vec<OutgoingRecord>,
        tally: &mut ProfileTally,
    ) {
        let stored = &mut work.stored;
        match ResolvedMarker::of_record(&record.value) {
            Some(Ok(marker)) => {
                tally.markers += 1;
                match marker {
                    ResolvedMarker::Absorbed { into } => {
                        for frame in stored.frames.values() {
                            transfers.push(Self::transfer(
                                frame,
                                customer,
                                into,
                                record.timestamp_millis,
                            ));
                            tally.transferred += 1;
                        }
                        self.clear(work);
                        work.mutations.push(KvMutation::Put {
                            clustering_key: Bytes::from_static(REDIRECT),
                            value: Bytes::from(into.to_string()),
                        });
                        work.stored.redirect = Some(into);
                    }
                    ResolvedMarker::MovedAway { event_id, to } => {
                        if !stored.journal.contains(&event_id) {
                            // Not here yet: an absorbed customer's hand-over is still on its
                            // way. The tombstone sends the event on when it comes.
                            work.mutations.push(KvMutation::Put {
                                clustering_key: moved_key(&event_id),
                                value: to.map_or_else(Bytes::new, |to| Bytes::from(to.to_string())),
                            });
                            stored.moved.insert(event_id, to);
                        } else if let Some(event) = stored.journal.remove(&event_id) {
                            let frame = stored.frames.remove(&event_id);
                            work.mutations.push(KvMutation::Delete {
                                clustering_key: journal_row_key(event.event_time, &event.event_id),
                            });
                            if let (Some(to), Some(frame)) = (to, frame) {
                                transfers.push(Self::transfer(
                                    &frame,
                                    customer,
                                    to,
                                    record.timestamp_millis,
                                ));
                                tally.transferred += 1;
                            }
                            stored.state = fold(stored.journal.events());
                            work.touched_state = true;
                        }
                    }
                    ResolvedMarker::Erased => {
                        self.clear(work);
                        work.mutations.push(KvMutation::Put {
                            clustering_key: Bytes::from_static(ERASED),
                            value: Bytes::new(),
                        });
                        work.stored.erased = true;
                    }
                    ResolvedMarker::Restored => {
                        if stored.redirect.take().is_some() {
                            work.mutations.push(KvMutation::Delete {
                                clustering_key: Bytes::from_static(REDIRECT),
                            });
                        }
                    }
                }
            }
            Some(Err(error)) => {
                tracing::error!(offset = record.offset, %error, "unreadable marker in events.resolved; skipped");
                tally.unreadable += 1;
            }
            None => match decode_framed_canonical(&record.value, &self.registry) {
                Ok(event) => {
                    let event_id = event.event_id;
                    let onward = if let Some(to) = stored.moved.remove(&event.event_id) {
                        // Moved away before it came: on to where it went, once.
                        work.mutations.push(KvMutation::Delete {
                            clustering_key: moved_key(&event.event_id),
                        });
                        Some(to)
                    } else {
                        // Absorbed: the event belongs with the customer it went into.
                        stored.redirect.map(Some)
                    };
                    match onward {
                        Some(Some(to)) => {
                            transfers.push(Self::transfer(
                                &record.value,
                                customer,
                                to,
                                record.timestamp_millis,
                            ));
                            tally.transferred += 1;
                        }
                        // Moved to nobody; or erased: nothing of the customer is kept.
                        Some(None) => {}
                        None if stored.erased => {}
                        None => self.fold_event(work, event, record.value.clone(), tally),
                    }
                    work.last_event = Some(event_id);
                }
                Err(error) => {
                    tracing::error!(offset = record.offset, %error, "events.resolved record is not a canonical frame; skipped");
                    tally.unreadable += 1;
                }
            },
        }
    }

    fn fold_event(
        &self,
        work: &mut Work,
        event: CanonicalEvent,
        frame: Bytes,
        tally: &mut ProfileTally,
    ) {
        let stored = &mut work.stored;
        let (time, id) = journal_key(&event);
        match add_and_fold(&mut stored.journal, &mut stored.state, event) {
            Added::Duplicate => tally.duplicates += 1,
            added => {
                tally.folded += 1;
                tally.late += u64::from(added == Added::Late);
                work.mutations.push(KvMutation::Put {
                    clustering_key: journal_row_key(time, &id),
                    value: frame.clone(),
                });
                stored.frames.insert(id, frame);
                work.touched_state = true;
            }
        }
    }

    /// Drops the customer's journal and profile.
    fn clear(&self, work: &mut Work) {
        let stored = &mut work.stored;
        for event in stored.journal.events() {
            work.mutations.push(KvMutation::Delete {
                clustering_key: journal_row_key(event.event_time, &event.event_id),
            });
        }
        work.mutations.push(KvMutation::Delete {
            clustering_key: Bytes::from_static(STATE),
        });
        stored.journal = Journal::new();
        stored.frames.clear();
        stored.state = ProfileState::default();
        work.touched_state = false;
    }
}

impl Processor for ProfileProcessor {
    type Tally = ProfileTally;
    type Error = ProfileError;

    async fn process(
        &self,
        partition: &TopicPartition,
        records: &[LogRecord],
    ) -> Result<ProfileTally, ProfileError> {
        let mut tally = ProfileTally::default();
        // Each customer's records, in offset order.
        let mut by_customer: BTreeMap<String, Vec<&LogRecord>> = BTreeMap::new();
        for record in records {
            match record
                .key
                .as_ref()
                .and_then(|key| std::str::from_utf8(key).ok())
            {
                Some(customer) => by_customer
                    .entry(customer.to_owned())
                    .or_default()
                    .push(record),
                None => {
                    tracing::error!(
                        offset = record.offset,
                        "events.resolved record without a customer key; skipped"
                    );
                    tally.unreadable += 1;
                }
            }
        }
        let mut works = Vec::with_capacity(by_customer.len());
        let mut transfers = Vec::new();
        for (customer, records) in by_customer {
            let cached = self.cache.as_ref().and_then(|cache| cache.take(&customer));
            let stored = match cached {
                Some(stored) => stored,
                None => load_customer(self.kv.as_ref(), &self.registry, &customer).await?,
            };
            let taken = stored
                .positions
                .get(&partition.partition)
                .copied()
                .unwrap_or(0);
            let mut work = Work {
                stored,
                mutations: Vec::new(),
                touched_state: false,
                next: None,
                last_event: None,
            };
            for record in records {
                if record.offset < taken {
                    tally.replayed += 1;
                    continue;
                }
                self.take(&customer, &mut work, record, &mut transfers, &mut tally);
                work.next = Some(record.offset + 1);
            }
            works.push((customer, work));
        }
        // Events that go to other customers are durable before the rows that let them go.
        if !transfers.is_empty() {
            self.log.append(&self.topic, transfers).await?;
        }
        let last = works.iter().rposition(|(_, work)| work.next.is_some());
        // A batch replayed whole (every record taken in before) writes nothing; the writes it
        // replays may have been made visible by an attempt whose sync then failed, so it still
        // ends with a durable (empty) apply before it may be committed.
        if last.is_none()
            && let Some((customer, _)) = works.first()
        {
            self.kv
                .apply(PROFILES_TABLE, customer.as_bytes(), Vec::new(), true)
                .await?;
        }
        let mut notices = Vec::with_capacity(works.len());
        let mut written = Vec::with_capacity(works.len());
        for (at, (customer, mut work)) in works.into_iter().enumerate() {
            // Every customer of the batch, replayed or not: an earlier attempt may have made
            // its rows durable and stopped before saying so.
            notices.push(OutgoingRecord {
                key: Some(Bytes::from(customer.clone())),
                value: Bytes::from(
                    ProfileChanged {
                        customer: customer.clone(),
                        event_id: work.last_event,
                    }
                    .to_json(),
                ),
                headers: Vec::new(),
                timestamp_millis: records.last().map_or(0, |record| record.timestamp_millis),
                partition: None,
            });
            let Some(next) = work.next else {
                written.push((customer, work.stored));
                continue;
            };
            if work.touched_state {
                work.mutations.push(KvMutation::Put {
                    clustering_key: Bytes::from_static(STATE),
                    value: Bytes::from(encode_state(&work.stored.state)),
                });
            }
            work.mutations.push(KvMutation::Put {
                clustering_key: position_key(partition.partition),
                value: Bytes::copy_from_slice(&next.to_be_bytes()),
            });
            // The last apply of the batch makes every one before it durable too.
            let durable = Some(at) == last;
            self.kv
                .apply(PROFILES_TABLE, customer.as_bytes(), work.mutations, durable)
                .await?;
            work.stored.positions.insert(partition.partition, next);
            written.push((customer, work.stored));
        }
        // Every row is durable now: the cache may hold the customers as written.
        if let Some(cache) = &self.cache {
            for (customer, stored) in written {
                cache.put(customer, stored);
            }
        }
        if let Some(topic) = &self.notices {
            self.log.append(topic, notices).await?;
        }
        Ok(tally)
    }
}

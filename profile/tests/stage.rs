//! The profile stage on the embedded log and key-value store: customers' journals and profiles
//! from `events.resolved`, duplicates and late events, a merge and then a split, an erasure,
//! and a second run over the whole topic that changes nothing; a merge and its split both
//! written before the stage reads them.

mod common;

use common::{Fixture, events};
use kinfold_core::{CanonicalEvent, EventId};
use kinfold_identity::model::CustomerId;
use kinfold_identity::records::ResolvedMarker;
use kinfold_profile::{ProfileState, fold};
use kinfold_storage::EmbeddedDatabase;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{BTreeMap, HashSet};

/// The events, each id once, as the journal orders them.
fn sorted(events: impl IntoIterator<Item = CanonicalEvent>) -> Vec<CanonicalEvent> {
    let mut seen = HashSet::new();
    let mut events: Vec<CanonicalEvent> = events
        .into_iter()
        .filter(|event| seen.insert(event.event_id))
        .collect();
    events.sort_by_key(|event| (event.event_time, event.event_id));
    events
}

/// Simple figures of `events`, worked out here: how many, till sales, till net spend in CNY.
fn figures(events: &[CanonicalEvent]) -> (u64, u64, i64) {
    use kinfold_core::event::{EventBody, PosTransactionKind};
    let mut sales = 0;
    let mut net = 0;
    for event in events {
        if let EventBody::PosTransaction(t) = &event.body {
            let sign = match t.kind {
                PosTransactionKind::Sale => {
                    sales += 1;
                    1
                }
                PosTransactionKind::Return => -1,
            };
            if t.currency == "CNY" {
                net += sign * t.total_minor;
            }
        }
    }
    (events.len() as u64, sales, net)
}

fn state_figures(state: &ProfileState) -> (u64, u64, i64) {
    (
        state.events,
        state.pos.orders,
        state
            .pos
            .money
            .get("CNY")
            .map_or(0, |spend| spend.net_minor()),
    )
}

/// Two customers' events with distinct ids (the generator draws ids at random).
fn two_customers(seed: u64) -> (Vec<CanonicalEvent>, Vec<CanonicalEvent>) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let a = events(&mut rng);
        let b = events(&mut rng);
        let ids: HashSet<EventId> = a.iter().map(|event| event.event_id).collect();
        if a.len() >= 5 && b.len() >= 5 && b.iter().all(|event| !ids.contains(&event.event_id)) {
            return (a, b);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journals_follow_duplicates_late_events_merges_splits_and_erasure() {
    journals_follow_everything(false).await;
}

/// The same with the customer cache: after every run it holds each customer as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journals_follow_everything_with_the_customer_cache() {
    journals_follow_everything(true).await;
}

async fn journals_follow_everything(cached: bool) {
    let directory = tempfile::tempdir().expect("tempdir");
    let database = EmbeddedDatabase::open(directory.path()).expect("database");
    let fixture = if cached {
        Fixture::cached(&database).await
    } else {
        Fixture::new(&database).await
    };
    let a = CustomerId(uuid::Uuid::from_u128(0xa));
    let b = CustomerId(uuid::Uuid::from_u128(0xb));
    let (a_events, b_events) = two_customers(7);

    // Each customer's events, latest first (every one after the first is late), then the
    // first three again.
    let mut a_sent: Vec<CanonicalEvent> = sorted(a_events.clone()).into_iter().rev().collect();
    a_sent.extend(a_events.iter().take(3).cloned());
    fixture.send(a, &a_sent).await;
    fixture.send(b, &b_events).await;
    let tally = fixture.run("profile").await;
    assert_eq!(tally.duplicates, 3, "{tally:?}");
    if let Some(cache) = &fixture.cache {
        assert_eq!(cache.len(), 2, "both customers are held");
    }
    assert!(tally.late > 0, "{tally:?}");

    let a_before = fixture.state(a).await;
    let b_before = fixture.state(b).await;
    for (stored, events) in [(&a_before, &a_events), (&b_before, &b_events)] {
        let expected = sorted(events.clone());
        assert_eq!(state_figures(&stored.state), figures(&expected));
        assert_eq!(stored.state, fold(expected.iter()));
    }

    // A merge: B is absorbed into A; its events go to A.
    fixture
        .mark(b, &[ResolvedMarker::Absorbed { into: a }])
        .await;
    let tally = fixture.run("profile").await;
    assert_eq!(tally.transferred, b_events.len() as u64, "{tally:?}");
    let merged = fixture.state(a).await;
    let both = sorted(a_events.iter().chain(&b_events).cloned());
    assert_eq!(state_figures(&merged.state), figures(&both));
    assert_eq!(merged.state, fold(both.iter()));
    let absorbed = fixture.state(b).await;
    assert_eq!(absorbed.redirect, Some(a));
    assert!(absorbed.journal.is_empty());

    // A late event of B's, sent under B after the merge, goes on to A.
    let mut straggler = b_events[0].clone();
    straggler.event_id = EventId(uuid::Uuid::from_u128(u128::MAX - 1));
    fixture.send(b, std::slice::from_ref(&straggler)).await;
    fixture.run("profile").await;
    assert!(fixture.state(a).await.journal.contains(&straggler.event_id));

    // The split: B is restored, and each of its events leaves A for B.
    let mut moves = vec![];
    for event in b_events.iter().chain([&straggler]) {
        moves.push(ResolvedMarker::MovedAway {
            event_id: event.event_id,
            to: Some(b),
        });
    }
    fixture.mark(b, &[ResolvedMarker::Restored]).await;
    fixture.mark(a, &moves).await;
    fixture.run("profile").await;
    let a_after = fixture.state(a).await;
    let b_after = fixture.state(b).await;
    assert_eq!(
        a_after.state, a_before.state,
        "A is what it was before the merge"
    );
    let b_expected = sorted(b_events.iter().chain([&straggler]).cloned());
    assert_eq!(b_after.state, fold(b_expected.iter()));
    assert_eq!(b_after.redirect, None);

    // A second group reading the whole topic again takes nothing in twice.
    let states: BTreeMap<_, _> = [(a, a_after.state.clone()), (b, b_after.state.clone())].into();
    let again = fixture.run("profile-again").await;
    assert_eq!(again.folded, 0, "{again:?}");
    assert_eq!(again.transferred, 0, "{again:?}");
    assert!(again.replayed > 0, "{again:?}");
    for (customer, state) in states {
        assert_eq!(fixture.state(customer).await.state, state);
    }

    // Erasure: nothing of A is kept, and later events of A are not folded.
    fixture.mark(a, &[ResolvedMarker::Erased]).await;
    fixture.send(a, &a_events[..1]).await;
    fixture.run("profile").await;
    let erased = fixture.state(a).await;
    assert!(erased.erased);
    assert!(erased.journal.is_empty());
    assert_eq!(erased.state, ProfileState::default());
}

/// Identity merged B into A and split them again before the profile stage caught up (as in a
/// rebuild): the split's `moved_away` for B's events reach A before the merge's hand-over
/// brings them there. Each profile still ends what it was, and merging again afterwards still
/// ends with both journals in A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_and_its_split_both_ahead_of_the_stage_end_where_they_began() {
    let directory = tempfile::tempdir().expect("tempdir");
    let database = EmbeddedDatabase::open(directory.path()).expect("database");
    let fixture = Fixture::new(&database).await;
    let a = CustomerId(uuid::Uuid::from_u128(0xa));
    let b = CustomerId(uuid::Uuid::from_u128(0xb));
    let (a_events, b_events) = two_customers(11);
    fixture.send(a, &a_events).await;
    fixture.send(b, &b_events).await;
    // The merge and the split, all written before the stage reads any of it.
    fixture
        .mark(b, &[ResolvedMarker::Absorbed { into: a }])
        .await;
    let moves: Vec<ResolvedMarker> = b_events
        .iter()
        .map(|event| ResolvedMarker::MovedAway {
            event_id: event.event_id,
            to: Some(b),
        })
        .collect();
    fixture.mark(a, &moves).await;
    fixture.mark(b, &[ResolvedMarker::Restored]).await;
    let tally = fixture.run("profile").await;
    // B's events went to A with the hand-over and on again to B.
    assert_eq!(tally.transferred, 2 * b_events.len() as u64, "{tally:?}");

    let a_after = fixture.state(a).await;
    let b_after = fixture.state(b).await;
    assert_eq!(a_after.state, fold(sorted(a_events.clone()).iter()));
    assert_eq!(b_after.state, fold(sorted(b_events.clone()).iter()));
    assert_eq!(b_after.redirect, None);
    assert!(
        a_after.moved.is_empty(),
        "tombstones are used up: {:?}",
        a_after.moved
    );

    // Merging again now moves B's events into A for good.
    fixture
        .mark(b, &[ResolvedMarker::Absorbed { into: a }])
        .await;
    fixture.run("profile").await;
    let both = sorted(a_events.iter().chain(&b_events).cloned());
    assert_eq!(fixture.state(a).await.state, fold(both.iter()));
    assert!(fixture.state(b).await.journal.is_empty());
}

/// A state row that does not read (JSON, as an earlier version stored it) is only a cache:
/// loads fold the journal again, and the stage's next write replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_row_in_an_older_encoding_is_folded_again_from_the_journal() {
    use kinfold_core::ports::KvMutation;
    use kinfold_profile::stage::{PROFILES_TABLE, load_customer_folded};
    let directory = tempfile::tempdir().expect("tempdir");
    let database = EmbeddedDatabase::open(directory.path()).expect("database");
    let fixture = Fixture::new(&database).await;
    let a = CustomerId(uuid::Uuid::from_u128(0xa));
    let (a_events, more) = two_customers(5);
    fixture.send(a, &a_events).await;
    fixture.run("profile").await;
    let expected = fold(sorted(a_events.clone()).iter());
    let old = serde_json::to_vec(&expected).expect("json");
    fixture
        .kv
        .apply(
            PROFILES_TABLE,
            a.to_string().as_bytes(),
            vec![KvMutation::Put {
                clustering_key: bytes::Bytes::from_static(b"s"),
                value: bytes::Bytes::from(old),
            }],
            true,
        )
        .await
        .expect("apply");
    assert_eq!(fixture.state(a).await.state, expected);
    let folded = load_customer_folded(fixture.kv.as_ref(), &fixture.registry, &a.to_string())
        .await
        .expect("loads");
    assert_eq!(folded.state, expected);
    // The next batch that touches the customer writes the state in the current encoding.
    fixture.send(a, &more[..1]).await;
    fixture.run("profile").await;
    let both = fold(sorted(a_events.iter().chain(&more[..1]).cloned()).iter());
    let row = fixture
        .kv
        .get(PROFILES_TABLE, a.to_string().as_bytes(), b"s")
        .await
        .expect("get")
        .expect("a state row");
    assert_eq!(
        kinfold_profile::stage::decode_state(&row).expect("reads"),
        both
    );
}

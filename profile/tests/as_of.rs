//! `GetProfile` with `as_of_micros` answers what `GetProfile` answered at that instant: events
//! stream in (each arriving a minute after it happened), the clock is the test's, and after
//! each one the profile is asked for and recorded; afterwards each recorded answer is asked for
//! again by its instant.

mod common;

use common::{Fixture, START, events};
use kinfold_core::time::{Clock, TimestampMicros};
use kinfold_identity::model::CustomerId;
use kinfold_profile::ProfileRules;
use kinfold_profile::service::ProfileService;
use kinfold_proto::v1 as pb;
use kinfold_proto::v1::profile_service_server::ProfileService as _;
use kinfold_storage::EmbeddedDatabase;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The test's clock.
#[derive(Debug, Default)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_micros(&self) -> TimestampMicros {
        self.0.load(Ordering::SeqCst)
    }
}

async fn get(service: &ProfileService, customer: CustomerId, as_of: Option<i64>) -> pb::Profile {
    service
        .get_profile(tonic::Request::new(pb::GetProfileRequest {
            key: Some(pb::get_profile_request::Key::CustomerId(
                customer.to_string(),
            )),
            as_of_micros: as_of,
        }))
        .await
        .expect("a profile")
        .into_inner()
        .profile
        .expect("a profile")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_an_instant_is_what_was_answered_then() {
    let directory = tempfile::tempdir().expect("tempdir");
    let database = EmbeddedDatabase::open(directory.path()).expect("database");
    let fixture = Fixture::new(&database).await;
    let clock = Arc::new(ManualClock::default());
    let service = ProfileService::new(
        fixture.kv.clone(),
        fixture.registry.clone(),
        ProfileRules::default_rules(),
        None,
        clock.clone(),
    );
    let customer = CustomerId(uuid::Uuid::from_u128(0xc));
    let mut rng = StdRng::seed_from_u64(11);
    let mut stream = events(&mut rng);
    while stream.len() < 10 {
        stream = events(&mut rng);
    }
    stream.sort_by_key(|event| (event.event_time, event.event_id));

    let mut answered = Vec::new();
    for event in &stream {
        // It arrives a minute after it happened; the answer is asked for at once.
        clock
            .0
            .store(event.event_time + 60_000_000, Ordering::SeqCst);
        fixture.send(customer, std::slice::from_ref(event)).await;
        fixture.run("profile").await;
        let now = clock.now_micros();
        answered.push((now, get(&service, customer, None).await));
    }
    // Later, with every event in, each instant again.
    clock
        .0
        .store(START + 1_000 * 86_400_000_000, Ordering::SeqCst);
    for (at, then) in &answered {
        assert_eq!(
            &get(&service, customer, Some(*at)).await,
            then,
            "as of {at}"
        );
    }
    // And the profile now is not the first one: the events did change it.
    assert_ne!(
        get(&service, customer, None).await.events,
        answered[0].1.events
    );
}

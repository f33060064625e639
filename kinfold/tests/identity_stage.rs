//! `kinfold serve` runs the identity stage, on the embedded log and on Kafka alike: events posted over HTTP come out of
//! `events.resolved` keyed by their customer, and `identity.changes` records how they joined. Worked out by hand from the default rules: the member (card M1), the WeChat
//! shopper (openid, unionid) who bound a phone, and the member's later update with that phone
//! are one person, whichever order the events reach the graph in (the canonical log has several
//! partitions); a second shopper is another. The check follows merges, as a reader of both logs
//! would, to each event's customer now.

use kinfold_core::EventId;
use kinfold_identity::model::CustomerId;
use kinfold_tests::shoppers::story;
use kinfold_tests::{TestLog, wait_stages_caught_up};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

#[test]
fn serve_resolves_posted_events_to_customers() {
    posted_events_resolve_to_customers(&TestLog::Embedded);
}

#[cfg(feature = "kafka")]
#[test]
fn serve_resolves_posted_events_to_customers_on_kafka() {
    posted_events_resolve_to_customers(&TestLog::kafka());
}

fn posted_events_resolve_to_customers(log: &TestLog) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = log.serve(BINARY.as_ref(), &data);
    let client = reqwest::blocking::Client::new();
    let mut ids = Vec::new();
    for event in story() {
        let answer: Value = client
            .post(format!("{}/v1/events", server.url))
            .json(&event)
            .send()
            .expect("posted")
            .json()
            .expect("json");
        assert_eq!(answer["results"][0]["status"], "accepted", "{answer}");
        let id: EventId = answer["results"][0]["event_id"]
            .as_str()
            .expect("event id")
            .parse()
            .expect("uuid");
        ids.push(id);
    }
    wait_stages_caught_up(
        &server,
        &["identity-forward", "identity"],
        Duration::from_secs(60),
    );
    server.stop().expect("graceful stop");

    let resolved = log.dump(BINARY.as_ref(), &data, "resolved");
    let changes = log.dump(BINARY.as_ref(), &data, "identity-changes");
    // absorbed -> survivor, from the merges recorded.
    let mut merged_into: BTreeMap<String, String> = BTreeMap::new();
    for change in &changes {
        let change = &change["change"];
        if change["change"] == "merged" {
            merged_into.insert(
                change["absorbed"].as_str().expect("absorbed").to_owned(),
                change["survivor"].as_str().expect("survivor").to_owned(),
            );
        }
    }
    let now = |mut customer: String| {
        while let Some(next) = merged_into.get(&customer) {
            customer = next.clone();
        }
        customer
    };
    let mut customer_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Markers (a merge absorbed a customer) name no event.
    for record in resolved.iter().filter(|record| record["marker"].is_null()) {
        let event = record["event"]["event_id"]
            .as_str()
            .expect("event id")
            .to_owned();
        let customer = record["customer"].as_str().expect("keyed").to_owned();
        customer_of.entry(event).or_default().insert(now(customer));
    }
    assert_eq!(
        customer_of.len(),
        5,
        "every event resolved: {customer_of:?}"
    );
    assert!(
        customer_of.values().all(|customers| customers.len() == 1),
        "one customer per event, however often written: {customer_of:?}"
    );
    let customer = |id: &EventId| {
        customer_of[&id.to_string()]
            .iter()
            .next()
            .expect("one")
            .clone()
    };
    let person = customer(&ids[0]);
    for id in &ids[1..4] {
        assert_eq!(customer(id), person, "{id} belongs to the member");
    }
    assert_ne!(
        customer(&ids[4]),
        person,
        "the second shopper is someone else"
    );
    // The survivor keeps the id of the customer seen first, which is one of the person's own
    // events: which one depends on the order they reached the graph in (the canonical log's
    // partitions are read side by side).
    assert!(
        ids[..4]
            .iter()
            .any(|id| person == CustomerId::first_seen_in(id).to_string()),
        "{person}"
    );
    // One merge, or none when the member's update with the phone came before the shopper
    // bound it (the phone then links the shopper's identifiers to the member directly).
    assert!(merged_into.len() <= 1, "at most one merge: {changes:?}");
}

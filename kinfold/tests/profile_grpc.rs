//! `kinfold.v1.ProfileService`, on the embedded log and on Kafka alike, called by a client the
//! project did not write (Python's grpcio, learning the API by reflection).
//!
//! The identity story (`kinfold_tests::shoppers`) makes one person of member card M1, WeChat
//! shopper o-1 and phone 13912345678; a Tmall buyer pays an order. Expected figures are written
//! out from the events posted. The buyer is merged into the person by hand and split off again:
//! during the merge the person's profile holds both journals, after the split each profile is
//! exactly what it was before.

use kinfold_tests::shoppers::{story, tmall_order};
use kinfold_tests::{Server, TestLog, grpc_calls, post_event, wait_stages_caught_up};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");
const PROFILES: &str = "kinfold.v1.ProfileService";
const IDENTITY: &str = "kinfold.v1.IdentityService";
/// After every event of the story: 2030-01-01.
const LATER: i64 = 1_893_456_000_000_000;

fn call(server: &Server, method: &str, request: Value) -> Value {
    grpc_calls(server, &json!([{"call": method, "request": request}])).remove(0)
}

fn ok(server: &Server, method: &str, request: Value) -> Value {
    let result = call(server, method, request.clone());
    assert_eq!(result["code"], "OK", "{method} {request}: {result}");
    result["response"].clone()
}

fn profile(server: &Server, request: Value) -> Value {
    ok(server, &format!("{PROFILES}/GetProfile"), request)["profile"].clone()
}

fn by_identifier(kind: &str, issuer: &str, value: &str) -> Value {
    json!({"identifier": {"kind": kind, "issuer": issuer, "value": value}})
}

/// An int64 of proto JSON (a string), 0 when absent.
fn int64(value: &Value) -> i64 {
    match value {
        Value::String(text) => text.parse().expect("an int64"),
        Value::Number(number) => number.as_i64().expect("an int64"),
        _ => 0,
    }
}

/// Waits until `customer`'s profile has folded `events` events.
fn wait_events(server: &Server, customer: &str, events: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = call(
            server,
            &format!("{PROFILES}/GetProfile"),
            json!({"customer_id": customer}),
        );
        if answer["code"] == "OK" && int64(&answer["response"]["profile"]["events"]) == events {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{customer} never reached {events} events: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_reflection_client_reads_profiles_as_of_journals_and_follows_merges_and_splits() {
    profiles_over_grpc(&TestLog::Embedded);
}

#[cfg(feature = "kafka")]
#[test]
fn a_reflection_client_reads_profiles_as_of_journals_and_follows_merges_and_splits_on_kafka() {
    profiles_over_grpc(&TestLog::kafka());
}

fn profiles_over_grpc(log: &TestLog) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = log.serve(BINARY.as_ref(), &dir.path().join("data"));

    let found = grpc_calls(
        &server,
        &json!([{"list_services": "v1"}, {"health": PROFILES}]),
    );
    assert!(
        found[0]["services"]
            .as_array()
            .expect("services")
            .contains(&json!(PROFILES)),
        "{found:?}"
    );
    assert_eq!(found[1]["status"], "SERVING", "{found:?}");

    let events = story();
    for event in &events {
        post_event(&server, event);
    }
    let paid_at = 1_767_236_000_000_000_i64;
    post_event(&server, &tmall_order("tm-buyer-1", "PAID", paid_at));
    wait_stages_caught_up(
        &server,
        &["ingest", "identity-forward", "identity", "profile"],
        Duration::from_secs(120),
    );

    // The person: the first four events of the story (the fifth is another shopper).
    let member = by_identifier("member_card", "kinfold-demo", "M1");
    let person = profile(&server, member.clone());
    let person_id = person["customer_id"].as_str().expect("id").to_owned();
    assert_eq!(int64(&person["events"]), 4, "{person}");
    assert_eq!(
        person["traits"]["phone"]["value"], "+8613912345678",
        "{person}"
    );
    assert_eq!(int64(&person["overall"]["orders"]), 0, "{person}");
    let buyer = profile(
        &server,
        by_identifier("tmall_omid", "tmall-outlet", "tm-buyer-1"),
    );
    let buyer_id = buyer["customer_id"].as_str().expect("id").to_owned();
    assert_ne!(buyer_id, person_id);
    assert_eq!(int64(&buyer["events"]), 1);
    assert_eq!(int64(&buyer["overall"]["orders"]), 1, "{buyer}");
    assert_eq!(int64(&buyer["channels"]["tmall"]["orders"]), 1, "{buyer}");
    assert_eq!(int64(&buyer["overall"]["money"]["CNY"]["net_minor"]), 4390);
    assert_eq!(int64(&buyer["overall"]["first_purchase_micros"]), paid_at);

    // As of the second event's time: two events folded.
    let second_time = events[1]["occurred_at"].as_i64().expect("time");
    let then = profile(
        &server,
        json!({"customer_id": person_id, "as_of_micros": second_time}),
    );
    assert_eq!(int64(&then["events"]), 2, "{then}");
    assert_eq!(int64(&then["as_of_micros"]), second_time);

    // The journal, three at a time, in event time.
    let journal = |token: &str| {
        ok(
            &server,
            &format!("{PROFILES}/ListJournal"),
            json!({"customer_id": person_id, "page_size": 3, "page_token": token}),
        )
    };
    let first = journal("");
    let token = first["next_page_token"].as_str().expect("token").to_owned();
    assert!(!token.is_empty());
    let rest = journal(&token);
    assert_eq!(rest["next_page_token"], "");
    let times: Vec<i64> = first["events"]
        .as_array()
        .expect("events")
        .iter()
        .chain(rest["events"].as_array().expect("events"))
        .map(|event| int64(&event["event_time_micros"]))
        .collect();
    let expected_times: Vec<i64> = events[..4]
        .iter()
        .map(|event| event["occurred_at"].as_i64().expect("time"))
        .collect();
    assert_eq!(times, expected_times);

    // Before the merge, as of a fixed instant, to compare after the split.
    let at = |customer: &str| json!({"customer_id": customer, "as_of_micros": LATER});
    let person_before = profile(&server, at(&person_id));
    let buyer_before = profile(&server, at(&buyer_id));

    ok(
        &server,
        &format!("{IDENTITY}/Merge"),
        json!({"survivor_customer_id": person_id, "absorbed_customer_id": buyer_id,
               "reason": "same person, checked at the store desk"}),
    );
    wait_events(&server, &person_id, 5);
    let merged = profile(&server, json!({"customer_id": person_id}));
    assert_eq!(int64(&merged["overall"]["orders"]), 1, "{merged}");
    assert_eq!(int64(&merged["overall"]["money"]["CNY"]["net_minor"]), 4390);
    // The absorbed id answers with the survivor, and says so.
    let through = profile(&server, json!({"customer_id": buyer_id}));
    assert_eq!(through["customer_id"], person_id.as_str());
    assert_eq!(through["asked_customer_id"], buyer_id.as_str());

    ok(
        &server,
        &format!("{IDENTITY}/Split"),
        json!({"customer_id": person_id, "restored_customer_id": buyer_id, "reason": "not the same after all"}),
    );
    wait_events(&server, &person_id, 4);
    wait_events(&server, &buyer_id, 1);
    assert_eq!(profile(&server, at(&person_id)), person_before);
    assert_eq!(profile(&server, at(&buyer_id)), buyer_before);

    // Wrong requests: every violation named; unknown customers not found.
    let get = format!("{PROFILES}/GetProfile");
    let list = format!("{PROFILES}/ListJournal");
    let wrong = grpc_calls(
        &server,
        &json!([
            {"call": get, "request": {}},
            {"call": get, "request": {"customer_id": "not-a-uuid"}},
            {"call": get, "request": {"identifier": {"kind": "shoe_size", "issuer": "", "value": "42"}}},
            {"call": get, "request": {"customer_id": person_id, "as_of_micros": -1}},
            {"call": list, "request": {"customer_id": "", "page_size": 5000}},
            {"call": list, "request": {"customer_id": person_id, "page_token": "zz"}},
            {"call": list, "request": {"customer_id": person_id, "page_token": "6aaéa"}},
        ]),
    );
    let fields = [
        vec!["key"],
        vec!["customer_id"],
        vec!["identifier.kind"],
        vec!["as_of_micros"],
        vec!["customer_id", "page_size"],
        vec!["page_token"],
        vec!["page_token"],
    ];
    for (answer, fields) in wrong.iter().zip(fields) {
        assert_eq!(answer["code"], "INVALID_ARGUMENT", "{answer}");
        let named: Vec<&str> = answer["field_violations"]
            .as_array()
            .expect("violations")
            .iter()
            .map(|violation| violation["field"].as_str().expect("field"))
            .collect();
        assert_eq!(named, fields, "{answer}");
    }
    let unknown = call(
        &server,
        &get,
        json!({"customer_id": "00000000-0000-0000-0000-000000000001"}),
    );
    assert_eq!(unknown["code"], "NOT_FOUND", "{unknown}");
    let nobody = call(
        &server,
        &get,
        by_identifier("member_card", "kinfold-demo", "NOBODY"),
    );
    assert_eq!(nobody["code"], "NOT_FOUND", "{nobody}");
    server.stop().expect("stops");
}

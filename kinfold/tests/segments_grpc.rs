//! `kinfold.v1.SegmentService` through `kinfold serve`, on the embedded log and on Kafka alike,
//! called by a client the project did not write (Python's grpcio, learning the API by
//! reflection).
//!
//! The identity story (`kinfold_tests::shoppers`) makes one person of member card M1, WeChat
//! shopper o-1 and phone 13912345678, and a second WeChat shopper; a Tmall buyer pays an
//! order. Of these, only the buyer has bought anything: the one member of "buyers". Merging the
//! buyer into the person by hand moves the membership: the buyer leaves, the person enters.

use kinfold_tests::shoppers::{story, tmall_order};
use kinfold_tests::{Server, TestLog, grpc_calls, post_event, wait_stages_caught_up};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");
const SEGMENTS: &str = "kinfold.v1.SegmentService";
const PROFILES: &str = "kinfold.v1.ProfileService";
const IDENTITY: &str = "kinfold.v1.IdentityService";

fn call(server: &Server, method: &str, request: Value) -> Value {
    grpc_calls(
        server,
        &json!([{"call": format!("{SEGMENTS}/{method}"), "request": request}]),
    )
    .remove(0)
}

fn ok(server: &Server, service: &str, method: &str, request: Value) -> Value {
    let result = grpc_calls(
        server,
        &json!([{"call": format!("{service}/{method}"), "request": request.clone()}]),
    )
    .remove(0);
    assert_eq!(result["code"], "OK", "{method} {request}: {result}");
    result["response"].clone()
}

fn segments(server: &Server, method: &str, request: Value) -> Value {
    ok(server, SEGMENTS, method, request)
}

/// A uint64 of proto JSON (a string), 0 when absent.
fn count(value: &Value) -> u64 {
    match value {
        Value::String(text) => text.parse().expect("a uint64"),
        Value::Number(number) => number.as_u64().expect("a uint64"),
        _ => 0,
    }
}

fn customer_of(server: &Server, kind: &str, issuer: &str, value: &str) -> String {
    let profile = ok(
        server,
        PROFILES,
        "GetProfile",
        json!({"identifier": {"kind": kind, "issuer": issuer, "value": value}}),
    );
    profile["profile"]["customer_id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

/// Waits until segment `id` has exactly `members`.
fn wait_members(server: &Server, id: &str, members: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut expected: Vec<&str> = members.to_vec();
    expected.sort_unstable();
    loop {
        let page = segments(server, "ListMembers", json!({"segment_id": id}));
        let listed: Vec<&str> = page["customer_ids"]
            .as_array()
            .map(|ids| ids.iter().map(|id| id.as_str().expect("an id")).collect())
            .unwrap_or_default();
        if listed == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never had members {expected:?}: {page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_reflection_client_defines_counts_lists_and_explains_segments_that_follow_a_merge() {
    segments_over_grpc(&TestLog::Embedded);
}

#[cfg(feature = "kafka")]
#[test]
fn a_reflection_client_defines_counts_lists_and_explains_segments_that_follow_a_merge_on_kafka() {
    segments_over_grpc(&TestLog::kafka());
}

fn segments_over_grpc(log: &TestLog) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = log.serve(BINARY.as_ref(), &dir.path().join("data"));
    let found = grpc_calls(
        &server,
        &json!([{"list_services": "v1"}, {"health": SEGMENTS}]),
    );
    assert!(
        found[0]["services"]
            .as_array()
            .expect("services")
            .contains(&json!(SEGMENTS)),
        "{found:?}"
    );
    assert_eq!(found[1]["status"], "SERVING", "{found:?}");

    for event in &story() {
        post_event(&server, event);
    }
    post_event(
        &server,
        &tmall_order("tm-buyer-1", "PAID", 1_767_236_000_000_000),
    );
    wait_stages_caught_up(
        &server,
        &[
            "ingest",
            "identity-forward",
            "identity",
            "profile",
            "segments",
        ],
        Duration::from_secs(120),
    );
    let person = customer_of(&server, "member_card", "kinfold-demo", "M1");
    let buyer = customer_of(&server, "tmall_omid", "tmall-outlet", "tm-buyer-1");

    let created = segments(
        &server,
        "CreateSegment",
        json!({"id": "buyers", "rule": "orders>=1"}),
    );
    assert_eq!(created["version"], 1);
    assert_eq!(
        created["rule"], "orders >= 1",
        "the rule as the language prints it"
    );
    wait_members(&server, "buyers", &[&buyer]);
    let counted = segments(&server, "CountMembers", json!({"segment_id": "buyers"}));
    assert_eq!(count(&counted["members"]), 1);
    let is = |customer: &str| {
        segments(
            &server,
            "IsMember",
            json!({"segment_id": "buyers", "customer_id": customer}),
        )["member"]
            .as_bool()
            .unwrap_or(false)
    };
    assert!(is(&buyer));
    assert!(!is(&person));

    // Why the person is not a member: the clause and the value it saw.
    let why = segments(
        &server,
        "ExplainMembership",
        json!({"segment_id": "buyers", "customer_id": person}),
    );
    assert_eq!(why["holds"], "false", "{why}");
    let lines: Vec<&str> = why["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|line| line.as_str().expect("a line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("orders") && line.contains('0')),
        "{lines:?}"
    );

    // A preview over every profile, saving nothing: the two story customers and the buyer.
    let preview = segments(
        &server,
        "PreviewSegment",
        json!({"rule": "not (orders >= 1)", "sample_size": 10}),
    );
    assert_eq!(count(&preview["customers"]), 3, "{preview}");
    assert_eq!(count(&preview["members"]), 2, "{preview}");
    // The same, decided one stored profile at a time instead of by the facts table.
    let from_store = segments(
        &server,
        "PreviewSegment",
        json!({"rule": "not (orders >= 1)", "sample_size": 10, "from_stored_profiles": true}),
    );
    assert_eq!(from_store, preview);
    let listed = segments(&server, "ListSegments", json!({}));
    assert_eq!(listed["segments"].as_array().expect("segments").len(), 1);

    // The merge moves the order to the person: the buyer leaves, the person enters.
    ok(
        &server,
        IDENTITY,
        "Merge",
        json!({"survivor_customer_id": person, "absorbed_customer_id": buyer,
               "reason": "same person, checked at the store desk"}),
    );
    wait_members(&server, "buyers", &[&person]);

    // Every member, streamed.
    let streamed = grpc_calls(
        &server,
        &json!([{"stream": format!("{SEGMENTS}/StreamMembers"), "request": {"segment_id": "buyers"}}]),
    )
    .remove(0);
    assert_eq!(streamed["code"], "OK", "{streamed}");
    let ids: Vec<&str> = streamed["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .flat_map(|batch| batch["customer_ids"].as_array().expect("ids"))
        .map(|id| id.as_str().expect("an id"))
        .collect();
    assert_eq!(ids, [person.as_str()]);

    // A watch from the start of segments.changes while a new version is made (every customer
    // evaluated again under it): the buyer entered and left, the person entered under version
    // 1, and leaves under version 2.
    let (watched, updated) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            grpc_calls(
                &server,
                &json!([{"stream": format!("{SEGMENTS}/WatchChanges"),
                         "request": {"segment_id": "buyers", "from_start": true},
                         "take": 4, "timeout": 60}]),
            )
            .remove(0)
        });
        let updated = segments(
            &server,
            "UpdateSegment",
            json!({"id": "buyers", "rule": "orders >= 2"}),
        );
        (watcher.join().expect("the watch"), updated)
    });
    assert_eq!(updated["version"], 2);
    assert_eq!(watched["code"], "OK", "{watched}");
    let mut seen: Vec<(String, bool, u64)> = watched["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .map(|change| {
            (
                change["customer_id"]
                    .as_str()
                    .expect("a customer")
                    .to_owned(),
                change["entered"].as_bool().expect("entered"),
                change["version"].as_u64().expect("a version"),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (buyer.clone(), true, 1),
        (buyer.clone(), false, 1),
        (person.clone(), true, 1),
        (person.clone(), false, 2),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    wait_members(&server, "buyers", &[]);

    // Wrong requests.
    let bad_rule = call(
        &server,
        "CreateSegment",
        json!({"id": "broken", "rule": "orders >="}),
    );
    assert_eq!(bad_rule["code"], "INVALID_ARGUMENT", "{bad_rule}");
    assert_eq!(
        bad_rule["field_violations"][0]["field"], "rule",
        "{bad_rule}"
    );
    let again = call(
        &server,
        "CreateSegment",
        json!({"id": "buyers", "rule": "orders >= 1"}),
    );
    assert_eq!(again["code"], "ALREADY_EXISTS", "{again}");
    let unknown = call(&server, "CountMembers", json!({"segment_id": "nope"}));
    assert_eq!(unknown["code"], "NOT_FOUND", "{unknown}");
    let bad_id = call(
        &server,
        "IsMember",
        json!({"segment_id": "buyers", "customer_id": "not-a-uuid"}),
    );
    assert_eq!(bad_id["code"], "INVALID_ARGUMENT", "{bad_id}");
    let deleted = segments(&server, "DeleteSegment", json!({"id": "buyers"}));
    assert_eq!(deleted["version"], 2);
    assert_eq!(
        call(&server, "CountMembers", json!({"segment_id": "buyers"}))["code"],
        "NOT_FOUND"
    );
    server.stop().expect("stops");
}

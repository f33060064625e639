//! The HTTP contract of `kinfold serve`, seen by a real HTTP client: content types, size caps,
//! status codes, per-item results, health, readiness and Prometheus metrics.

use kinfold_core::event::EventBody;
use kinfold_schemas::codec::{Codecs, family_subject};
use kinfold_tests::Server;
use serde_json::{Value, json};
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

fn sale(serial: &str) -> Value {
    json!({
        "type": "pos.transaction", "kind": "SALE", "brand": "b", "store_id": "S1", "till_id": "T1",
        "serial": serial, "business_day": "2026-11-20", "occurred_at_local": "2026-11-20T09:00:00",
        "currency": "CNY", "lines": [{"sku": "A", "quantity": 2, "unit_price_minor": 150}],
        "total_minor": 300, "member_card": "M1", "phone": "undefined"
    })
}

#[test]
fn the_http_contract_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(BINARY);
    command
        .env("KINFOLD__INGEST__MAX_BATCH_ITEMS", "5")
        .env("KINFOLD__INGEST__MAX_BODY_BYTES", "20000");
    let server = Server::start_command(command, dir.path()).expect("kinfold starts");
    let client = reqwest::blocking::Client::new();
    let events = format!("{}/v1/events", server.url);
    let post = |content_type: &str, body: Vec<u8>| {
        let response = client
            .post(&events)
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json::<Value>().unwrap_or(Value::Null))
    };

    assert_eq!(
        client
            .get(format!("{}/healthz", server.url))
            .send()
            .expect("healthz")
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{}/readyz", server.url))
            .send()
            .expect("readyz")
            .status(),
        200
    );

    // One event, then the same again plus a broken one in a batch.
    let (status, answer) = post("application/json", sale("1").to_string().into_bytes());
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["results"][0]["status"], "accepted");
    let mut broken = sale("2");
    broken["lines"][0]["quantity"] = json!(-1);
    let (status, answer) = post(
        "application/json",
        json!([sale("1"), broken, sale("3")])
            .to_string()
            .into_bytes(),
    );
    assert_eq!(status, 202);
    let statuses: Vec<&str> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, vec!["duplicate", "rejected", "accepted"]);
    assert_eq!(answer["results"][1]["reason_code"], "invalid_amount");
    assert!(
        answer["results"][1]["reason"]
            .as_str()
            .expect("reason")
            .contains("lines[0].quantity")
    );

    // Too many items: 413, kept as one dead letter.
    let six: Vec<Value> = (10..16).map(|i| sale(&i.to_string())).collect();
    let (status, answer) = post("application/json", json!(six).to_string().into_bytes());
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["results"][0]["reason_code"], "batch_too_large");
    // A body over the byte cap: 413 before it is read.
    let (status, _) = post("application/json", vec![b' '; 30_000]);
    assert_eq!(status, 413);
    // Not JSON at all: 400, kept as one dead letter.
    let (status, answer) = post("application/json", b"{ nope".to_vec());
    assert_eq!(status, 400);
    assert_eq!(answer["results"][0]["reason_code"], "undecodable");
    // An unknown content type: 415.
    let (status, _) = post("text/plain", b"hello".to_vec());
    assert_eq!(status, 415);

    // Avro: one framed record, then frames with a bad magic byte and a truncated length.
    let subject = family_subject(kinfold_core::EventFamily::PosTransaction);
    let latest: Value = client
        .get(format!(
            "{}/registry/subjects/{subject}/versions/latest",
            server.url
        ))
        .send()
        .expect("registry")
        .json()
        .expect("json");
    let id = latest["id"].as_u64().expect("id") as u32;
    let body: EventBody =
        kinfold_ingest::model::decode_json_event(&sale("20").to_string()).expect("decodes");
    let framed = kinfold_schemas::frame(id, &Codecs::new().encode_family(&body).expect("encodes"));
    let (status, answer) = post("application/vnd.confluent.avro", framed.clone());
    assert_eq!(status, 202);
    assert_eq!(answer["results"][0]["status"], "accepted", "{answer}");
    // Two records in a body meant for one: the second is not silently dropped.
    let mut two = framed.clone();
    two.extend_from_slice(&framed[5..]);
    let (status, answer) = post("application/vnd.confluent.avro", two);
    assert_eq!(status, 202);
    assert_eq!(answer["results"][0]["status"], "rejected", "{answer}");
    assert!(
        answer["results"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("left over")
    );
    let mut bad_magic = framed.clone();
    bad_magic[0] = 7;
    let (status, answer) = post("application/vnd.confluent.avro", bad_magic);
    assert_eq!(status, 202);
    assert_eq!(answer["results"][0]["reason_code"], "bad_framing");
    let mut frames = (framed.len() as u32 + 10).to_be_bytes().to_vec();
    frames.extend_from_slice(&framed);
    let (status, answer) = post("application/vnd.kinfold.avro-frames", frames);
    assert_eq!(status, 400);
    assert_eq!(answer["results"][0]["reason_code"], "bad_framing");

    // The registry: Kinfold's own subjects are not writable; versions are numbers.
    let refused = client
        .post(format!(
            "{}/registry/subjects/events.canonical-value/versions",
            server.url
        ))
        .body(json!({"schema": "\"string\""}).to_string())
        .send()
        .expect("registry");
    assert_eq!(refused.status().as_u16(), 403);
    let refused: Value = refused.json().expect("json");
    assert_eq!(refused["error_code"], 40301);
    let bad_version = client
        .get(format!(
            "{}/registry/subjects/{subject}/versions/zero",
            server.url
        ))
        .send()
        .expect("registry");
    assert_eq!(bad_version.status().as_u16(), 422);
    let bad_id = client
        .get(format!("{}/registry/schemas/ids/abc", server.url))
        .send()
        .expect("registry");
    assert_eq!(bad_id.status().as_u16(), 404);
    assert_eq!(bad_id.json::<Value>().expect("json")["error_code"], 40403);

    // Metrics count what happened, by source and reason.
    let metrics = client
        .get(format!("{}/metrics", server.url))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    let value = |line_start: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(line_start))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("no metric {line_start} in\n{metrics}"))
    };
    assert_eq!(
        value("kinfold_events_accepted_total{source=\"pos_transaction\"}"),
        3.0
    );
    assert_eq!(
        value("kinfold_events_duplicate_total{source=\"pos_transaction\"}"),
        1.0
    );
    assert_eq!(
        value(
            "kinfold_events_rejected_total{source=\"pos_transaction\",reason=\"invalid_amount\"}"
        ),
        1.0
    );
    assert_eq!(
        value("kinfold_identifiers_dropped_total{kind=\"phone\",why=\"placeholder\"}"),
        4.0
    );
    assert!(
        metrics.contains("kinfold_log_append_seconds_bucket"),
        "append latency histogram"
    );
    server.stop().expect("graceful stop");
}

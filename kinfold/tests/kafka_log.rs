//! `kinfold serve` with its event log on Kafka (a real Kafka-protocol broker, tansu): events
//! posted over HTTP land in `events.canonical` and `events.dlq` on the broker, where Confluent's
//! own Python consumer and Avro deserializer read them through Kinfold's `/registry`; a
//! restarted Kinfold with an empty data directory rebuilds its duplicate index from Kafka.
#![cfg(feature = "kafka")]

use kinfold_tests::{Broker, Server, run_python_json};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

fn sale(serial: usize) -> Value {
    json!({
        "type": "pos.transaction", "kind": "SALE", "brand": "b", "store_id": "S1", "till_id": "T1",
        "serial": serial.to_string(), "business_day": "2026-11-20", "occurred_at_local": "2026-11-20T10:00:00",
        "currency": "CNY", "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 100}], "total_minor": 100
    })
}

fn serve(broker: &Broker, data_dir: &std::path::Path) -> Server {
    let mut command = Command::new(BINARY);
    command.env(
        "KINFOLD__STORAGE__LOG",
        format!("kafka://{}", broker.bootstrap),
    );
    Server::start_command(command, data_dir).expect("kinfold starts on kafka")
}

fn post(server: &Server, events: &[Value]) -> Vec<Value> {
    let answer: Value = reqwest::blocking::Client::new()
        .post(format!("{}/v1/events", server.url))
        .json(&events)
        .send()
        .expect("request")
        .json()
        .expect("json");
    answer["results"].as_array().expect("results").clone()
}

#[test]
fn the_event_log_on_kafka() {
    let broker = Broker::start().expect("tansu starts");
    let first_dir = tempfile::tempdir().expect("temp dir");
    let mut events: Vec<Value> = (0..40).map(sale).collect();
    for serial in 0..4 {
        let mut broken = sale(1000 + serial);
        broken["total_minor"] = json!(-1);
        events.push(broken);
    }
    let server = serve(&broker, first_dir.path());
    let results = post(&server, &events);
    let accepted: BTreeSet<String> = results
        .iter()
        .filter(|r| r["status"] == "accepted")
        .map(|r| r["event_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(accepted.len(), 40);
    let registry = format!("{}/registry", server.url);

    let canonical = run_python_json(
        "kafka_consume.py",
        &[&broker.bootstrap, &registry, "events.canonical", "40"],
    )
    .expect("python consumer");
    assert_eq!(canonical["partitions"], 8);
    let read: BTreeSet<String> = canonical["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            assert_eq!(r["key"], r["id"], "records are keyed by event id");
            assert_eq!(r["type"], "pos.sale");
            r["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(
        read, accepted,
        "what was acknowledged is on the broker, once"
    );
    let dead = run_python_json(
        "kafka_consume.py",
        &[&broker.bootstrap, &registry, "events.dlq", "4"],
    )
    .expect("python consumer");
    let codes: Vec<&str> = dead["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["type"].as_str().expect("code"))
        .collect();
    assert_eq!(codes, vec!["invalid_amount"; 4]);
    server.stop().expect("graceful stop");

    // A new process with an empty data directory: its duplicate index is rebuilt from Kafka.
    let second_dir = tempfile::tempdir().expect("temp dir");
    let server = serve(&broker, second_dir.path());
    let again = post(&server, &events);
    for result in &again[..40] {
        assert_eq!(result["status"], "duplicate", "{result}");
    }
    for result in &again[40..] {
        assert_eq!(result["newly_recorded"], false, "{result}");
    }
    server.stop().expect("graceful stop");
}

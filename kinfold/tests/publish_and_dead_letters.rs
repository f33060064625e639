//! `kinfold publish` with JSON lines and with an Avro container file written by fastavro under
//! Kinfold's frozen v1 POS schema; then `kinfold dlq list` and `kinfold dlq redrive` after the
//! cause of a rejection (a limit set through the environment) is lifted.

use kinfold_benches::generator::{Generator, GeneratorConfig};
use kinfold_ingest::model::JsonEvent;
use kinfold_tests::{Server, dump_log, run_python_json};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

fn kinfold(args: &[&str]) -> Value {
    let output = Command::new(BINARY)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs kinfold");
    assert!(
        output.status.success(),
        "kinfold {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json output")
}

#[test]
fn publish_files_and_redrive_dead_letters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");

    // JSON lines: 60 generated events, one line that is not JSON, one event with a long store id.
    let mut lines: Vec<String> = Generator::new(GeneratorConfig {
        customers: 50,
        ..GeneratorConfig::default()
    })
    .take_events(60)
    .into_iter()
    .map(|body| serde_json::to_string(&JsonEvent::from(body)).expect("json"))
    .collect();
    lines.push("{ this is not json".to_owned());
    let long_line = serde_json::json!({
        "type": "pos.transaction", "kind": "SALE", "brand": "b", "store_id": "S".repeat(40), "till_id": "T1",
        "serial": "LONG-1", "business_day": "2026-11-20", "occurred_at_local": "2026-11-20T09:00:00",
        "currency": "CNY", "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 100}], "total_minor": 100
    });
    lines.push(long_line.to_string());
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&jsonl, lines.join("\n")).expect("write jsonl");

    // An Avro container file written by fastavro with the frozen v1 POS schema.
    let avro = dir.path().join("pos.avro");
    let v1 = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/avro/pos.transactions-value/v1.avsc");
    run_python_json(
        "write_avro_container.py",
        &[
            v1.to_str().expect("path"),
            avro.to_str().expect("path"),
            "40",
        ],
    )
    .expect("fastavro writes the file");

    // A server whose store ids may be at most 32 bytes, set through the environment.
    let server = {
        let mut command = Command::new(BINARY);
        command.env("KINFOLD__INGEST__MAX_ID_LEN", "32");
        Server::start_command(command, &data).expect("kinfold starts")
    };
    let published = kinfold(&[
        "publish",
        jsonl.to_str().expect("path"),
        "--server",
        &server.url,
        "--json",
        "--batch",
        "25",
    ]);
    assert_eq!(published["accepted"], 60, "{published}");
    assert_eq!(published["rejected"], 2, "{published}");
    let published = kinfold(&[
        "publish",
        avro.to_str().expect("path"),
        "--server",
        &server.url,
        "--json",
    ]);
    assert_eq!(published["accepted"], 40, "{published}");
    let again = kinfold(&[
        "publish",
        avro.to_str().expect("path"),
        "--server",
        &server.url,
        "--json",
    ]);
    assert_eq!(again["duplicates"], 40, "the same file twice: {again}");

    let listed = kinfold(&["dlq", "list", "--server", &server.url, "--json"]);
    let letters = listed["dead_letters"].as_array().expect("letters");
    let codes: Vec<&str> = letters
        .iter()
        .map(|letter| letter["reason_code"].as_str().expect("code"))
        .collect();
    assert_eq!(codes, vec!["undecodable", "field_too_long"], "{listed}");
    server.stop().expect("graceful stop");

    // The limit lifted (default 128), the over-long event redriven: accepted now. The line that
    // is not JSON stays rejected.
    let server = Server::start(BINARY.as_ref(), &data).expect("kinfold restarts");
    let redriven = kinfold(&["dlq", "redrive", "--server", &server.url, "--json"]);
    let statuses: Vec<&str> = redriven["redriven"]
        .as_array()
        .expect("redriven")
        .iter()
        .map(|item| item["result"]["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, vec!["rejected", "accepted"], "{redriven}");
    server.stop().expect("graceful stop");

    let canonical = dump_log(BINARY.as_ref(), &data, "canonical").expect("dump");
    assert_eq!(canonical.len(), 60 + 40 + 1);
    let from_file: Vec<&Value> = canonical
        .iter()
        .map(|entry| &entry["event"])
        .filter(|event| event["body"]["kinfold.pos.PosTransaction"]["brand"] == "container-test")
        .collect();
    assert_eq!(from_file.len(), 40);
    let returns = from_file
        .iter()
        .filter(|event| event["event_type"] == "pos.return")
        .count();
    assert_eq!(returns, 10);
    // "null" member cards were dropped as junk; the others kept.
    let with_card = from_file
        .iter()
        .filter(|event| {
            event["identifiers"]
                .as_array()
                .is_some_and(|ids| !ids.is_empty())
        })
        .count();
    assert_eq!(with_card, 20);
    // v1 had no guide_id: it decodes as absent.
    assert!(
        from_file
            .iter()
            .all(|event| event["body"]["kinfold.pos.PosTransaction"]["guide_id"].is_null())
    );
}

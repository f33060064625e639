//! The `/registry` API driven by Confluent's own Python client: it registers a new version of
//! the POS schema, serialises records with it (Confluent wire format), and posts them; the
//! records must be in the canonical log, decoded through the registered writer schema.

use kinfold_tests::{Server, dump_log, run_python_json};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

#[test]
fn a_stock_confluent_client_registers_and_its_records_are_decoded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(BINARY.as_ref(), dir.path()).expect("kinfold starts");
    let answer =
        run_python_json("registry_client.py", &[&server.url, "25"]).expect("python client runs");
    server.stop().expect("graceful stop");

    assert_eq!(answer["compatible"], true, "{answer}");
    assert_eq!(answer["incompatible_refused_with"], 409, "{answer}");
    assert_eq!(answer["fetched_schema_has_vendor_note"], true);
    // Kinfold's v1 and v2 of the POS schema, then the client's version.
    assert_eq!(answer["versions"], serde_json::json!([1, 2, 3]));
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), 25);
    for result in results {
        assert_eq!(result["status"], "accepted", "{result}");
    }

    let canonical = dump_log(BINARY.as_ref(), dir.path(), "canonical").expect("dump");
    let mut serials: Vec<String> = Vec::new();
    for entry in &canonical {
        let transaction = &entry["event"]["body"]["kinfold.pos.PosTransaction"];
        if transaction["brand"] != "registry-test" {
            continue;
        }
        assert_eq!(
            transaction["guide_id"], "G7",
            "a v2 field decoded: {transaction}"
        );
        assert_eq!(transaction["total_minor"], 3000);
        let card: Vec<&Value> = entry["event"]["identifiers"]
            .as_array()
            .expect("identifiers")
            .iter()
            .filter(|identifier| identifier["kind"] == "member_card")
            .collect();
        assert_eq!(card.len(), 1);
        serials.push(transaction["serial"].as_str().expect("serial").to_owned());
    }
    serials.sort();
    let expected: Vec<String> = answer["serials"]
        .as_array()
        .expect("serials")
        .iter()
        .map(|serial| serial.as_str().expect("serial").to_owned())
        .collect();
    assert_eq!(serials, expected);
}

//! The Online Retail II data set imported (`kinfold import online-retail`), taken through
//! identity and the profile stage by `kinfold serve`, and every customer read back over gRPC by
//! a client the project did not write (Python's grpcio, which learns the API from the server's
//! reflection service): order count, return count, net spend and first and last purchase
//! agree, for every customer, with DuckDB over the same CSV
//! (`tests/python/online_retail_profiles.py`).

use kinfold_tests::{
    Server, import_online_retail, run_python_json, shared_data, wait_stages_caught_up,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

/// An int64 as proto JSON gives it (a string), or absent.
fn int64(value: &Value) -> Option<i64> {
    match value {
        Value::String(text) => Some(text.parse().expect("an int64")),
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

#[test]
fn every_customer_reads_back_as_duckdb_counts_them() {
    let csv = shared_data("online_retail_II_2009-2010.csv.gz");
    let expected = run_python_json(
        "online_retail_profiles.py",
        &[csv.to_str().expect("utf-8 path")],
    )
    .expect("duckdb answers");
    let expected = expected.as_object().expect("customers").clone();
    assert!(expected.len() > 4_000, "{} customers", expected.len());

    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    import_online_retail(
        BINARY.as_ref(),
        &csv,
        &data_dir,
        &dir.path().join("unmapped.jsonl"),
    );
    let server = Server::start(BINARY.as_ref(), &data_dir).expect("kinfold serves");
    wait_stages_caught_up(
        &server,
        &["identity-forward", "identity", "profile"],
        Duration::from_secs(600),
    );

    // One client process asks for every customer, by member card.
    let customers: Vec<&String> = expected.keys().collect();
    let calls: Vec<Value> = customers
        .iter()
        .map(|customer| {
            json!({
                "call": "kinfold.v1.ProfileService/GetProfile",
                "request": {"identifier": {
                    "kind": "member_card", "issuer": "online-retail-ii", "value": customer
                }},
            })
        })
        .collect();
    let calls_file = dir.path().join("calls.json");
    std::fs::write(&calls_file, Value::Array(calls).to_string()).expect("calls file");
    let answers = run_python_json(
        "grpc_reflect_client.py",
        &[&server.grpc, &format!("@{}", calls_file.display())],
    )
    .expect("the grpc client runs");
    let answers = answers.as_array().expect("answers");
    assert_eq!(answers.len(), customers.len());

    let mut wrong = BTreeMap::new();
    for (customer, answer) in customers.iter().zip(answers) {
        assert_eq!(answer["code"], "OK", "customer {customer}: {answer}");
        let overall = &answer["response"]["profile"]["overall"];
        let got = json!({
            "orders": int64(&overall["orders"]).unwrap_or(0),
            "returns": int64(&overall["returns"]).unwrap_or(0),
            "net_pence": int64(&overall["money"]["GBP"]["net_minor"]).unwrap_or(0),
            "first_purchase_us": int64(&overall["first_purchase_micros"]),
            "last_purchase_us": int64(&overall["last_purchase_micros"]),
        });
        if got != expected[customer.as_str()] {
            wrong.insert(
                customer.to_string(),
                (got, expected[customer.as_str()].clone()),
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} customers differ from DuckDB, for example {:?}",
        wrong.len(),
        customers.len(),
        wrong.iter().take(3).collect::<Vec<_>>()
    );
    server.stop().expect("stops");
}

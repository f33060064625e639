//! `kinfold import online-retail` on the full shared data set, checked against DuckDB and
//! pandas over the same CSV (tests/python/online_retail_expected.py).

use kinfold_tests::{dump_log, run_python_json, shared_data};
use serde_json::Value;
use std::collections::BTreeSet;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

fn import(csv: &std::path::Path, data_dir: &std::path::Path, report: &std::path::Path) -> Value {
    kinfold_tests::import_online_retail(BINARY.as_ref(), csv, data_dir, report)
}

#[test]
fn the_full_data_set_imports_as_duckdb_counts_it() {
    let csv = shared_data("online_retail_II_2009-2010.csv.gz");
    assert!(
        csv.exists(),
        "the shared data set is missing at {}",
        csv.display()
    );
    let expected = run_python_json(
        "online_retail_expected.py",
        &[csv.to_str().expect("utf-8 path")],
    )
    .expect("duckdb and pandas answer");
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let report = dir.path().join("unmapped.jsonl");

    let summary = import(&csv, &data_dir, &report);
    assert_eq!(summary["rows"], expected["rows"]);

    // What is in the canonical log, counted from the log itself.
    let canonical = dump_log(BINARY.as_ref(), &data_dir, "canonical").expect("dump canonical");
    let (mut sales, mut returns, mut with_card) = (0i64, 0i64, 0i64);
    let (mut sales_total, mut returns_total) = (0i64, 0i64);
    let mut ids = BTreeSet::new();
    for entry in &canonical {
        let event = &entry["event"];
        assert!(
            ids.insert(event["event_id"].as_str().expect("id").to_owned()),
            "event twice: {event}"
        );
        let transaction = &event["body"]["kinfold.pos.PosTransaction"];
        let total = transaction["total_minor"].as_i64().expect("total");
        match event["event_type"].as_str() {
            Some("pos.sale") => {
                sales += 1;
                sales_total += total;
            }
            Some("pos.return") => {
                returns += 1;
                returns_total += total;
            }
            other => panic!("unexpected event type {other:?}"),
        }
        let cards = event["identifiers"]
            .as_array()
            .expect("identifiers")
            .iter()
            .filter(|identifier| identifier["kind"] == "member_card")
            .count();
        assert!(cards <= 1);
        with_card += cards as i64;
    }
    assert_eq!(
        sales,
        expected["sales"].as_i64().expect("sales"),
        "sale transactions"
    );
    assert_eq!(
        returns,
        expected["returns"].as_i64().expect("returns"),
        "return transactions"
    );
    assert_eq!(
        with_card,
        expected["with_customer"].as_i64().expect("with customer"),
        "with a member card"
    );
    assert_eq!(
        sales_total,
        expected["sales_total_pence"].as_i64().expect("total"),
        "sales in pence"
    );
    assert_eq!(
        returns_total,
        expected["returns_total_pence"].as_i64().expect("total"),
        "returns in pence"
    );

    // Every row that is not a sale or return line is in the dead-letter log with its line.
    let expected_lines: BTreeSet<i64> = expected["unmapped_lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|line| line.as_i64().expect("line number"))
        .collect();
    let dead_letters = dump_log(BINARY.as_ref(), &data_dir, "dlq").expect("dump dlq");
    let mut dead_lines = BTreeSet::new();
    for letter in &dead_letters {
        assert_eq!(letter["channel"], "import");
        assert!(
            !letter["reason"].as_str().unwrap_or_default().is_empty(),
            "a reason: {letter}"
        );
        assert!(
            dead_lines.insert(letter["line"].as_i64().expect("line")),
            "line twice: {letter}"
        );
    }
    assert_eq!(
        dead_lines, expected_lines,
        "unmapped rows in the dead-letter log"
    );
    let report_lines: BTreeSet<i64> = std::fs::read_to_string(&report)
        .expect("report")
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("json")["line"]
                .as_i64()
                .expect("line")
        })
        .collect();
    assert_eq!(report_lines, expected_lines, "unmapped rows in the report");
    assert_eq!(
        summary["rows_unmapped"].as_u64(),
        Some(expected_lines.len() as u64)
    );

    // Importing again changes nothing: every transaction is recognised as a duplicate.
    let again = import(&csv, &data_dir, &report);
    assert_eq!(again["transactions_accepted"], 0);
    assert_eq!(
        again["transactions_duplicate"].as_i64(),
        Some(sales + returns)
    );
    let canonical_again =
        dump_log(BINARY.as_ref(), &data_dir, "canonical").expect("dump canonical");
    assert_eq!(canonical_again.len(), canonical.len());
    let dead_again = dump_log(BINARY.as_ref(), &data_dir, "dlq").expect("dump dlq");
    assert_eq!(dead_again.len(), dead_letters.len());
}

//! `kinfold identity preview` over a real data directory: the identity tests' story (five
//! events) posted to a running Kinfold, then the identity graph's history (`identity.inputs`)
//! re-resolved under a rule file in which phones no longer merge customers. Worked out by hand from the rules:
//! today the member (card M1) and the WeChat shopper (openid, unionid) are one customer, joined
//! by the phone the shopper bound and the member later gave, and the second shopper another;
//! without phone merges the two stay apart and the phone with whichever the graph saw it with
//! first: one customer splits, three identifiers and one, or two and two.

use kinfold_tests::shoppers::story;
use kinfold_tests::{Server, wait_stages_caught_up};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

const NO_PHONE_MERGES: &str = r#"
priority = ["member_card", "phone", "wechat_unionid", "wechat_openid", "email", "device_id"]
merge_on = ["member_card", "wechat_unionid", "wechat_openid"]

[[limits]]
kind = "member_card"
max = 1
"#;

fn run_preview(data_dir: &std::path::Path, rules: &std::path::Path, json: bool) -> String {
    let mut command = Command::new(BINARY);
    command
        .args(["identity", "preview", "--rules"])
        .arg(rules)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn");
    if json {
        command.arg("--json");
    }
    let output = command.output().expect("kinfold runs");
    assert!(
        output.status.success(),
        "preview failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn a_rule_change_is_previewed_over_the_stored_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = Server::start(BINARY.as_ref(), &data).expect("kinfold starts");
    let client = reqwest::blocking::Client::new();
    // One request each, so that the receive times give the order.
    for event in story() {
        let answer: Value = client
            .post(format!("{}/v1/events", server.url))
            .json(&event)
            .send()
            .expect("posted")
            .json()
            .expect("json");
        assert_eq!(answer["results"][0]["status"], "accepted", "{answer}");
    }
    // The preview reads the identity graph's input log: let the stage take every event in.
    wait_stages_caught_up(
        &server,
        &["ingest", "identity-forward", "identity"],
        Duration::from_secs(60),
    );
    server.stop().expect("graceful stop");

    let rules = dir.path().join("no-phone-merges.toml");
    std::fs::write(&rules, NO_PHONE_MERGES).expect("rule file");
    let preview: Value =
        serde_json::from_str(&run_preview(&data, &rules, true)).expect("json preview");
    assert_eq!(preview["events"], 5);
    // The second shopper is a customer of their own under both rule files.
    assert_eq!(preview["customers_now"], 2, "{preview}");
    assert_eq!(preview["customers_after"], 3, "{preview}");
    let splits = preview["splits"].as_array().expect("splits");
    assert_eq!(splits.len(), 1, "{preview}");
    let sizes: Vec<usize> = splits[0]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|group| group.as_array().expect("group").len())
        .collect();
    // The phone stays with whoever the graph saw it with first: the shopper who bound it
    // (openid, unionid, phone | card) or the member's update (card, phone | openid, unionid).
    assert!(sizes == [3, 1] || sizes == [2, 2], "{preview}");
    assert_eq!(preview["merges"], json!([]));

    let text = run_preview(&data, &rules, false);
    assert!(
        text.contains("1 customers would split, 0 customers would come from merges"),
        "{text}"
    );
}

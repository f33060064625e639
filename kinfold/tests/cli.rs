//! The command line: `schemas check` refuses an incompatible change, `config print` shows the
//! layers, `demo` streams events into the log.

use kinfold_tests::dump_log;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn schemas_check_refuses_an_incompatible_version() {
    let ok = Command::new(BINARY)
        .args(["schemas", "check"])
        .output()
        .expect("runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("BACKWARD_TRANSITIVE compatible"));

    let dir = tempfile::tempdir().expect("temp dir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/avro");
    copy_dir(&source, dir.path());
    let checked = Command::new(BINARY)
        .args(["schemas", "check", "--dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(
        checked.status.success(),
        "an untouched copy passes: {}",
        String::from_utf8_lossy(&checked.stderr)
    );

    let pos = dir.path().join("pos.transactions-value");
    let mut v3: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pos.join("v2.avsc")).expect("v2"))
            .expect("json");
    v3["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "channel", "type": "string"}));
    std::fs::write(pos.join("v3.avsc"), v3.to_string()).expect("write v3");
    let refused = Command::new(BINARY)
        .args(["schemas", "check", "--dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(
        !refused.status.success(),
        "a required field without default must be refused"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("pos.transactions-value v3"), "{stderr}");
}

#[test]
fn config_print_shows_every_layer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kinfold.toml");
    std::fs::write(
        &file,
        "[http]\naddr = \"0.0.0.0:9000\"\n[ingest]\nmax_lines = 50\n",
    )
    .expect("write");
    let output = Command::new(BINARY)
        .args(["--config"])
        .arg(&file)
        .args(["config", "print", "--grpc-addr", "127.0.0.1:7777"])
        .env("KINFOLD__INGEST__MAX_LINES", "60")
        .env("KINFOLD__TOPICS__CANONICAL_PARTITIONS", "4")
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: toml::Value =
        toml::from_str(&String::from_utf8_lossy(&output.stdout)).expect("toml");
    assert_eq!(
        printed["http"]["addr"].as_str(),
        Some("0.0.0.0:9000"),
        "file over defaults"
    );
    assert_eq!(
        printed["ingest"]["max_lines"].as_integer(),
        Some(60),
        "environment over file"
    );
    assert_eq!(
        printed["topics"]["canonical_partitions"].as_integer(),
        Some(4)
    );
    assert_eq!(
        printed["grpc"]["addr"].as_str(),
        Some("127.0.0.1:7777"),
        "flags over everything"
    );
    assert_eq!(
        printed["log"]["level"].as_str(),
        Some("info"),
        "defaults where nothing is set"
    );

    let bad = Command::new(BINARY)
        .args(["config", "print"])
        .env("KINFOLD__INGEST__MAX_LINES", "many")
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .to_lowercase()
            .contains("ingest.max_lines")
    );
}

#[test]
fn demo_streams_events_into_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(BINARY)
        .args([
            "demo",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--customers",
            "100",
            "--rate",
            "2000",
            "--events",
            "500",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starts the demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut finished = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.contains("generated 500 events") {
            finished = Some(line);
            break;
        }
        assert!(Instant::now() < deadline, "the demo did not finish in time");
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(
        child.wait().expect("exits").success(),
        "graceful exit on SIGTERM"
    );
    let finished = finished.expect("the demo reports its totals");
    let canonical = dump_log(BINARY.as_ref(), dir.path(), "canonical").expect("dump");
    let dead = dump_log(BINARY.as_ref(), dir.path(), "dlq").expect("dump");
    // One event in 97 is broken on purpose; the rest are stored.
    assert_eq!(dead.len(), 500 / 97, "{finished}");
    assert_eq!(canonical.len(), 500 - 500 / 97, "{finished}");
    let families: std::collections::BTreeSet<String> = canonical
        .iter()
        .map(|entry| {
            entry["event"]["event_type"]
                .as_str()
                .expect("type")
                .split('.')
                .next()
                .expect("family")
                .to_owned()
        })
        .collect();
    assert_eq!(
        families.len(),
        4,
        "pos, ecom, wechat and membership events: {families:?}"
    );
}

//! "Acknowledged only when durable", seen from the outside: `kinfold serve` runs under strace
//! and, for every request, an fsync must come after the request was read and before its 202
//! was written. (A SIGKILL test cannot show this: the page cache outlives a killed process.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");

fn sale(serial: usize) -> String {
    serde_json::json!({
        "type": "pos.transaction", "kind": "SALE", "brand": "b", "store_id": "S1", "till_id": "T1",
        "serial": serial.to_string(), "business_day": "2026-11-20", "occurred_at_local": "2026-11-20T10:00:00",
        "currency": "CNY", "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 100}], "total_minor": 100
    })
    .to_string()
}

#[test]
fn every_202_follows_an_fsync_of_its_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("trace.txt");
    let mut child = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-s",
            "40",
            "-e",
            "trace=fsync,fdatasync,recvfrom,read,writev,write,sendto",
            "-o",
        ])
        .arg(&trace)
        .arg(BINARY)
        .args(kinfold_tests::SERVE_ON_FREE_PORTS)
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("strace runs (install it: apt-get install strace)");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(start) = line.find("http://") {
                let _ = sender.send(
                    line[start..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let url = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("kinfold prints its address");
    let client = reqwest::blocking::Client::new();
    const REQUESTS: usize = 5;
    for serial in 0..REQUESTS {
        let response = client
            .post(format!("{url}/v1/events"))
            .header("content-type", "application/json")
            .body(sale(serial))
            .send()
            .expect("request");
        assert_eq!(response.status().as_u16(), 202);
    }
    // strace's first line names the traced kinfold process; a graceful stop of kinfold ends
    // strace too.
    let traced = std::fs::read_to_string(&trace).expect("trace");
    let kinfold_pid = traced
        .split_whitespace()
        .next()
        .expect("a traced line")
        .to_owned();
    Command::new("kill")
        .args(["-TERM", &kinfold_pid])
        .status()
        .expect("kill");
    assert!(
        child.wait().expect("exits").success(),
        "kinfold stops gracefully"
    );

    let trace = std::fs::read_to_string(&trace).expect("trace");
    let mut acknowledged = 0;
    let mut request_open = false;
    let mut synced_since_request = false;
    for line in trace.lines() {
        if line.contains("\"POST /v1/events") {
            request_open = true;
            synced_since_request = false;
        } else if line.contains("fsync(") || line.contains("fdatasync(") {
            synced_since_request = true;
        } else if line.contains("HTTP/1.1 202") && request_open {
            assert!(
                synced_since_request,
                "a 202 was written before any fsync of its request:\n{line}"
            );
            acknowledged += 1;
            request_open = false;
        }
    }
    assert_eq!(
        acknowledged, REQUESTS,
        "every request's answer was found in the trace"
    );
}

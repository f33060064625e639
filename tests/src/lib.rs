//! End-to-end harness: start a real `kinfold` process on a temporary data directory, find the
//! address it prints, talk to it with real clients, kill it, read its logs back.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `kinfold serve` on free ports (the bound addresses are printed); the data directory follows.
pub const SERVE_ON_FREE_PORTS: [&str; 6] = [
    "serve",
    "--http-addr",
    "127.0.0.1:0",
    "--grpc-addr",
    "127.0.0.1:0",
    "--data-dir",
];

/// A running `kinfold serve`.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The gRPC server's `127.0.0.1:PORT`.
    pub grpc: String,
}

impl Server {
    /// Starts `kinfold serve` on `data_dir` with a free port and waits until it is ready.
    pub fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_command(Command::new(binary), data_dir)
    }

    /// Like `start`, with a command prepared by the caller (environment, current directory).
    /// Logs go to the test's stderr, at `warn` unless the command sets `RUST_LOG`.
    pub fn start_command(command: Command, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_logging(command, data_dir, Stdio::inherit())
    }

    /// Like `start_command`, with the process's logs (stderr) going to `stderr`, for example
    /// a file to read back.
    pub fn start_logging(
        mut command: Command,
        data_dir: &Path,
        stderr: impl Into<Stdio>,
    ) -> anyhow::Result<Self> {
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
            .args(SERVE_ON_FREE_PORTS)
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("cannot start kinfold")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let word = |line: &str, from: usize| {
                line[from..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            };
            let mut http = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(start) = line.find("http://") {
                    http = Some(word(&line, start));
                }
                if let (Some(start), Some(url)) = (line.find("grpc://"), &http) {
                    let grpc = word(&line, start + "grpc://".len());
                    let _ = sender.send((url.clone(), grpc));
                }
            }
        });
        let (url, grpc) = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(addresses) => addresses,
            Err(_) => {
                let _ = child.kill();
                bail!("kinfold did not print its addresses within 60 s");
            }
        };
        let server = Self { child, url, grpc };
        server.wait_ready(Duration::from_secs(60))?;
        Ok(server)
    }

    fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let client = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if let Ok(response) = client.get(format!("{}/readyz", self.url)).send()
                && response.status().is_success()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("kinfold at {} was not ready within {timeout:?}", self.url)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or drain.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits for a graceful exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let exit = self.child.wait()?;
        if !exit.success() {
            bail!("kinfold exited with {exit} after SIGTERM");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `kinfold log dump --topic TOPIC` on a stopped data directory; one JSON value a line.
pub fn dump_log(
    binary: &Path,
    data_dir: &Path,
    topic: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    dump_with(Command::new(binary), data_dir, topic)
}

fn dump_with(
    mut command: Command,
    data_dir: &Path,
    topic: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let output = command
        .args(["log", "dump", "--topic", topic, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .context("cannot run kinfold log dump")?;
    if !output.status.success() {
        bail!(
            "kinfold log dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout)?
        .lines()
        .map(|line| serde_json::from_str(line).context("dump line is not json"))
        .collect()
}

/// The Python interpreter with the test dependencies: `KINFOLD_PYTHON`, else the environment
/// `scripts/test` prepares (`~/.cache/kinfold-ci/venv`, or under `KINFOLD_CACHE`) if it is
/// there, else `python3`.
pub fn python() -> String {
    if let Ok(python) = std::env::var("KINFOLD_PYTHON") {
        return python;
    }
    let cache = std::env::var("KINFOLD_CACHE").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/kinfold-ci"),
        PathBuf::from,
    );
    let venv = cache.join("venv/bin/python");
    if venv.exists() {
        venv.display().to_string()
    } else {
        "python3".to_owned()
    }
}

/// A file of the Python test helpers in `tests/python/`.
pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// A file of the shared data sets (`KINFOLD_SHARED_DATA`, else `../shared/data` beside the
/// repository).
pub fn shared_data(name: &str) -> PathBuf {
    let dir = std::env::var("KINFOLD_SHARED_DATA").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        PathBuf::from,
    );
    dir.join(name)
}

/// Runs a Python helper and parses its standard output as JSON.
pub fn run_python_json(script: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let output = Command::new(python())
        .arg(python_script(script))
        .args(args)
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (set KINFOLD_PYTHON to the test virtualenv)",
                python()
            )
        })?;
    if !output.status.success() {
        bail!(
            "{script} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "{script} did not print json: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A tansu broker (a Kafka-protocol broker) on a free loopback port, in a temporary directory;
/// killed on drop. `scripts/test` installs it; `KINFOLD_TANSU` points at another binary.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
}

/// Where the tansu binary is.
pub fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("KINFOLD_TANSU") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/kinfold-ci/tansu-0.6.0-libsql/bin/tansu")
}

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        let binary = tansu_binary();
        if !binary.exists() {
            bail!(
                "no tansu broker at {} (scripts/test installs it; or set KINFOLD_TANSU)",
                binary.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start tansu")?;
        let broker = Self {
            child,
            _dir: dir,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("tansu did not listen within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a test's `kinfold` processes keep their event log: the embedded log in their data
/// directory, or a real Kafka-protocol broker (tansu) started for the test. End-to-end tests
/// written against it run unchanged on both.
#[derive(Debug)]
pub enum TestLog {
    Embedded,
    Kafka(Broker),
}

impl TestLog {
    /// A fresh broker.
    pub fn kafka() -> Self {
        Self::Kafka(Broker::start().expect("tansu starts"))
    }

    /// A `kinfold` command using this log (quick group timeouts on Kafka).
    pub fn command(&self, binary: &Path) -> Command {
        let mut command = Command::new(binary);
        if let Self::Kafka(broker) = self {
            command.env(
                "KINFOLD__STORAGE__LOG",
                format!(
                    "kafka://{}?session.timeout.ms=6000&heartbeat.interval.ms=1000",
                    broker.bootstrap
                ),
            );
        }
        command
    }

    /// `kinfold serve` on `data_dir` with this log.
    pub fn serve(&self, binary: &Path, data_dir: &Path) -> Server {
        Server::start_command(self.command(binary), data_dir).expect("kinfold starts")
    }

    /// [`dump_log`] of this log (the server stopped).
    pub fn dump(&self, binary: &Path, data_dir: &Path, topic: &str) -> Vec<serde_json::Value> {
        dump_with(self.command(binary), data_dir, topic).expect("kinfold log dump")
    }
}

/// Whether every one of `stages` reports a consumer lag of 0 on every partition it owns (and
/// reports at all) on the server's `/metrics`.
pub fn stages_caught_up(server: &Server, stages: &[&str]) -> bool {
    let Ok(answer) = reqwest::blocking::get(format!("{}/metrics", server.url)) else {
        return false;
    };
    let text = answer.text().unwrap_or_default();
    stages.iter().all(|stage| {
        let label = format!("stage=\"{stage}\"");
        let mut gauges = text
            .lines()
            .filter(|line| line.starts_with("kinfold_consumer_lag{") && line.contains(&label))
            .peekable();
        gauges.peek().is_some() && gauges.all(|line| line.ends_with(" 0"))
    })
}

/// Waits until [`stages_caught_up`]; the lag gauges are measured every 2 s, so it first gives
/// them time to see records just written.
pub fn wait_stages_caught_up(server: &Server, stages: &[&str], timeout: Duration) {
    std::thread::sleep(Duration::from_secs(3));
    let deadline = Instant::now() + timeout;
    while !stages_caught_up(server, stages) {
        assert!(
            Instant::now() < deadline,
            "stages {stages:?} did not catch up within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Records in every partition of `topic`: the sum of the high watermarks.
pub async fn total_records(log: &dyn kinfold_core::ports::EventLog, topic: &str) -> u64 {
    let mut total = 0;
    for partition in 0..log.partitions(topic).await.expect("partitions") {
        total += log
            .watermarks(topic, partition)
            .await
            .expect("watermarks")
            .1;
    }
    total
}

/// Runs `calls` (see `tests/python/grpc_reflect_client.py`) against `server` in one client
/// process that learns the API by reflection; one result per call.
pub fn grpc_calls(server: &Server, calls: &serde_json::Value) -> Vec<serde_json::Value> {
    let results = run_python_json(
        "grpc_reflect_client.py",
        &[&server.grpc, &calls.to_string()],
    )
    .expect("the grpc client runs");
    results.as_array().expect("a list of results").clone()
}

/// Posts `event` to `POST /v1/events`; it must be accepted.
pub fn post_event(server: &Server, event: &serde_json::Value) {
    let answer: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/v1/events", server.url))
        .json(event)
        .send()
        .expect("posted")
        .json()
        .expect("json");
    assert_eq!(answer["results"][0]["status"], "accepted", "{answer}");
}

/// `kinfold import online-retail CSV --data-dir DATA_DIR --report REPORT --json`: its JSON
/// summary.
pub fn import_online_retail(
    binary: &Path,
    csv: &Path,
    data_dir: &Path,
    report: &Path,
) -> serde_json::Value {
    let output = Command::new(binary)
        .args(["import", "online-retail"])
        .arg(csv)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--report")
        .arg(report)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs kinfold import");
    assert!(
        output.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("import prints a json summary")
}

/// The partitions of `topics` whose end `group` has not committed, as `topic/partition:
/// committed of high`.
pub async fn group_behind(
    log: &dyn kinfold_core::ports::EventLog,
    group: &str,
    topics: &[&str],
) -> Vec<String> {
    let mut behind = Vec::new();
    for topic in topics {
        for partition in 0..log.partitions(topic).await.expect("partitions") {
            let (_, high) = log.watermarks(topic, partition).await.expect("watermarks");
            let committed = log
                .committed(group, topic, partition)
                .await
                .expect("committed")
                .unwrap_or(0);
            if committed < high {
                behind.push(format!("{topic}/{partition}: {committed} of {high}"));
            }
        }
    }
    behind
}

/// Runs `processor` as a stage over `topic` (group `group`, `batch` records at a time,
/// `max_in_flight` batches at once) until the group has committed every partition's end, then
/// stops it and returns its report.
pub async fn run_stage_until_caught_up<P: kinfold_core::stage::Processor>(
    log: std::sync::Arc<dyn kinfold_core::ports::EventLog>,
    processor: P,
    group: &str,
    topic: &str,
    max_in_flight: usize,
    batch: usize,
) -> kinfold_core::stage::StageReport<P::Tally> {
    use kinfold_core::stage::{StageConfig, StageStatus, run_stage};
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut options = kinfold_core::ports::GroupOptions::new(group, vec![topic.to_owned()]);
    options.batch = batch;
    let mut config = StageConfig::new(group);
    config.max_in_flight = max_in_flight;
    config.idle = Duration::from_millis(10);
    config.commit_interval = Duration::from_millis(20);
    let stage = tokio::spawn(run_stage(
        log.clone(),
        std::sync::Arc::new(processor),
        options,
        config,
        std::sync::Arc::new(StageStatus::default()),
        shutdown,
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let behind = group_behind(log.as_ref(), group, &[topic]).await;
        if behind.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{group} did not catch up: {behind:?}"
        );
    }
    stop.send(true).expect("stop");
    stage.await.expect("stage task").expect("stage ran")
}

/// Events of a member and a WeChat shopper, as JSON for `POST /v1/events` or the intake: the
/// identity tests' material.
pub mod shoppers {
    use serde_json::{Value, json};

    /// A WeChat event of the shopper with `openid` (unionid `u-<openid>`), with the phone they
    /// bound, if any.
    pub fn wechat_event(
        event_type: &str,
        openid: &str,
        occurred_at: i64,
        phone: Option<&str>,
    ) -> Value {
        json!({
            "type": "wechat.event", "event_type": event_type, "app_id": "wxmp0001",
            "openid": openid, "unionid": format!("u-{openid}"), "occurred_at": occurred_at,
            "phone": phone, "phone_consent": phone.map(|_| true)
        })
    }

    /// A Tmall order by `buyer` (no other identifier) at `status`, for 43.90 yuan, at
    /// `occurred_at`.
    pub fn tmall_order(buyer: &str, status: &str, occurred_at: i64) -> Value {
        json!({
            "type": "ecom.order", "platform": "TMALL", "brand": "kinfold-demo",
            "shop_id": "tmall-outlet", "order_id": "3900000000000000001", "status": status,
            "source_version": 1, "occurred_at": occurred_at,
            "buyer": {"platform_buyer_id": buyer},
            "currency": "CNY",
            "items": [{"sku": "CM-001", "title": "Lipstick Classic", "category": "cosmetics",
                       "quantity": 1, "unit_price_minor": 4390, "discount_minor": 0}],
            "coupons": [], "total_minor": 4390, "paid_minor": if status == "CREATED" { 0 } else { 4390 }
        })
    }

    /// The identity tests' story, in order: member `M1` registers; shopper `o-1` logs in to the
    /// mini program, then binds phone 13912345678; the member updates their profile with that
    /// phone (so the two are one person); shopper `o-2` logs in (someone else).
    pub fn story() -> Vec<Value> {
        vec![
            membership_event("REGISTERED", "CRM-1", 1_767_230_000_000_000, None),
            wechat_event("MINI_PROGRAM_LOGIN", "o-1", 1_767_231_000_000_000, None),
            wechat_event(
                "PHONE_BOUND",
                "o-1",
                1_767_232_000_000_000,
                Some("13912345678"),
            ),
            membership_event(
                "PROFILE_UPDATED",
                "CRM-2",
                1_767_233_000_000_000,
                Some("13912345678"),
            ),
            wechat_event("MINI_PROGRAM_LOGIN", "o-2", 1_767_234_000_000_000, None),
        ]
    }

    /// A membership event of member card `M1`, with a phone, if any.
    pub fn membership_event(
        event_type: &str,
        reference: &str,
        occurred_at: i64,
        phone: Option<&str>,
    ) -> Value {
        json!({
            "type": "membership.event", "event_type": event_type, "brand": "kinfold-demo",
            "member_card": "M1", "event_ref": reference, "occurred_at": occurred_at, "phone": phone
        })
    }
}

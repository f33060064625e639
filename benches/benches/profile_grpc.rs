//! `GetProfile` over gRPC on a populated store: throughput and latency of Kinfold's
//! ProfileService against gRPC health checking (tonic-health's `Check`) served by the same
//! server to the same client, in the same run.
//!
//! The store: the embedded store filled by the profile stage itself from the Online Retail II
//! data set's members (see `kinfold_benches::online_retail`), one customer per member card.
//!
//! - The server runs on one thread (a current-thread tokio runtime; embedded reads happen on
//!   it): one core. It serves ProfileService and health, with Nagle's algorithm off, as
//!   `kinfold serve` does.
//! - The client (tonic, on a one-worker runtime: the other core) keeps 32 calls in flight over
//!   4 HTTP/2 connections for a fixed time, each call timed from send to answer.
//! - Kinfold: `GetProfile` by customer id, customers in a scattered order: the folded state
//!   read from the store, the profile worked out (RFM, lifetime value, top SKUs) and encoded.
//! - baseline: health `Check` of the server as a whole: the same transport, client and server
//!   with next to no work per call; the ceiling this client and this server thread reach.
//!
//! Rounds alternate sides; the median round's throughput and its p50 and p99 latency are
//! reported (five seconds a side a round, three rounds; `KINFOLD_BENCH_QUICK=1`: one second).
//! Every answer is checked: a failed call or an empty profile fails the bench.

use kinfold_benches::online_retail::{FILE, members};
use kinfold_benches::quick;
use kinfold_core::ports::{EventLog, KvStore, OutgoingRecord};
use kinfold_core::time::SystemClock;
use kinfold_identity::model::CustomerId;
use kinfold_identity::records::resolved_record;
use kinfold_profile::ProfileRules;
use kinfold_profile::service::ProfileService;
use kinfold_profile::stage::{MAX_IN_FLIGHT, ProfileProcessor};
use kinfold_proto::v1 as pb;
use kinfold_schemas::catalog::CANONICAL_SUBJECT;
use kinfold_schemas::codec::Codecs;
use kinfold_schemas::wire::frame;
use kinfold_schemas::{Catalog, SchemaRegistry};
use kinfold_storage::EmbeddedDatabase;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const TOPIC: &str = "events.resolved";
const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 32;

/// Fills the store with the members' profiles through the profile stage; returns the
/// customer ids.
async fn populate(
    database: &EmbeddedDatabase,
) -> (Arc<dyn KvStore>, Arc<SchemaRegistry>, Vec<String>) {
    let log: Arc<dyn EventLog> = Arc::new(database.log());
    let kv: Arc<dyn KvStore> = Arc::new(database.kv());
    let registry = Arc::new(SchemaRegistry::open(kv.clone()).await.expect("registry"));
    registry
        .register_catalog(&Catalog::embedded())
        .await
        .expect("catalog");
    // The current canonical schema: registering the catalog made it the latest.
    let schema_id = registry
        .latest_id(CANONICAL_SUBJECT)
        .expect("canonical schema");
    log.ensure_topic(TOPIC, 4).await.expect("topic");
    let codecs = Codecs::new();
    let members = members(&kinfold_tests::shared_data(FILE));
    let mut customers = Vec::with_capacity(members.journals.len());
    let mut records: Vec<OutgoingRecord> = Vec::new();
    for journal in &members.journals {
        let first = journal.events().next().expect("a journal has events");
        let customer = CustomerId::first_seen_in(&first.event_id);
        customers.push(customer.to_string());
        for event in journal.events() {
            let framed = frame(schema_id, &codecs.encode_canonical(event).expect("encodes"));
            records.push(resolved_record(&framed.into(), customer, 0));
        }
    }
    for batch in records.chunks(1000) {
        log.append(TOPIC, batch.to_vec()).await.expect("append");
    }
    let processor = ProfileProcessor::new(log.clone(), kv.clone(), registry.clone(), TOPIC);
    let report = kinfold_tests::run_stage_until_caught_up(
        log,
        processor,
        "kinfold-profile",
        TOPIC,
        MAX_IN_FLIGHT,
        500,
    )
    .await;
    assert_eq!(
        report.tally.folded,
        members.events() as u64,
        "the stage folds every event"
    );
    println!(
        "  populated: {} customers, {} events folded by the profile stage",
        customers.len(),
        report.tally.folded
    );
    (kv, registry, customers)
}

/// The server thread, for its CPU time.
struct ServerThread {
    address: SocketAddr,
    /// `/proc/<pid>/task/<tid>/stat` of the server thread.
    stat: std::path::PathBuf,
}

impl ServerThread {
    /// CPU time the thread has used (user and system).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(&self.stat).expect("the server thread's stat");
        // Fields after the command name (which is in parentheses): utime is the 12th, stime
        // the 13th, in clock ticks (100 a second on Linux).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("a stat line")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        Duration::from_millis(ticks * 10)
    }
}

/// Serves `service` and health on a thread of its own.
fn serve(service: ProfileService) -> ServerThread {
    let (address_sender, address) = std::sync::mpsc::channel();
    let server = std::thread::Builder::new().name("grpc-server".to_owned());
    server
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("listens");
                let stat = std::path::Path::new("/proc")
                    .join(
                        std::fs::read_link("/proc/thread-self").expect("the thread's /proc entry"),
                    )
                    .join("stat");
                address_sender
                    .send(ServerThread {
                        address: listener.local_addr().expect("address"),
                        stat,
                    })
                    .expect("sends the address");
                let (_reporter, health) = tonic_health::server::health_reporter();
                tonic::transport::Server::builder()
                    .add_service(health)
                    .add_service(service.into_server())
                    .serve_with_incoming(
                        tonic::transport::server::TcpIncoming::from(listener)
                            .with_nodelay(Some(true)),
                    )
                    .await
                    .expect("serves");
            });
        })
        .expect("the server thread starts");
    address.recv().expect("the server's address")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Kinfold,
    Baseline,
}

/// One side's round: calls answered per second, p50 and p99 latency, and the server thread's
/// share of its core.
#[derive(Clone, Copy, Debug)]
struct Round {
    rate: f64,
    busy: f64,
    p50: Duration,
    p99: Duration,
}

async fn round(
    channels: &[Channel],
    customers: &Arc<Vec<String>>,
    side: Side,
    length: Duration,
    server: &ServerThread,
) -> Round {
    let cpu = server.cpu();
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::with_capacity(IN_FLIGHT);
    for task in 0..IN_FLIGHT {
        let channel = channels[task % channels.len()].clone();
        let customers = customers.clone();
        tasks.push(tokio::spawn(async move {
            let mut profiles =
                pb::profile_service_client::ProfileServiceClient::new(channel.clone());
            let mut health = HealthClient::new(channel);
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            // Each task walks the customers with its own stride, so calls scatter over the store.
            let mut next = task * 7919;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match side {
                    Side::Kinfold => {
                        next = (next + 104_729) % customers.len();
                        let request = pb::GetProfileRequest {
                            key: Some(pb::get_profile_request::Key::CustomerId(
                                customers[next].clone(),
                            )),
                            as_of_micros: None,
                        };
                        let answer = profiles
                            .get_profile(request)
                            .await
                            .expect("GetProfile answers");
                        let profile = answer.into_inner().profile.expect("a profile");
                        assert!(
                            profile.events > 0,
                            "a populated customer's profile has events"
                        );
                    }
                    Side::Baseline => {
                        let answer = health
                            .check(HealthCheckRequest {
                                service: String::new(),
                            })
                            .await
                            .expect("Check answers");
                        assert_eq!(answer.into_inner().status, 1, "the server is serving");
                    }
                }
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a client task"));
    }
    let elapsed = started.elapsed();
    let busy = (server.cpu() - cpu).as_secs_f64() / elapsed.as_secs_f64();
    latencies.sort_unstable();
    let at = |quantile: f64| {
        let index = ((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1);
        Duration::from_micros(u64::from(latencies[index]))
    };
    Round {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        busy,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn main() {
    let quick = quick();
    let (rounds, length) = if quick {
        (3, Duration::from_secs(1))
    } else {
        (3, Duration::from_secs(5))
    };
    println!(
        "profile gRPC bench{}: GetProfile by customer id vs health Check, server on one thread, {IN_FLIGHT} calls in flight over {CONNECTIONS} connections, {} s a side a round",
        if quick { " (quick)" } else { "" },
        length.as_secs()
    );
    let directory = tempfile::tempdir().expect("temporary directory");
    let database = EmbeddedDatabase::open(directory.path()).expect("database");
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    let (kv, registry, customers) = client_runtime.block_on(populate(&database));
    let service = ProfileService::new(
        kv,
        registry,
        ProfileRules::default_rules(),
        None,
        Arc::new(SystemClock),
    );
    let server = serve(service);
    let address = server.address;
    let customers = Arc::new(customers);
    client_runtime.block_on(async move {
        let mut channels = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            channels.push(
                Channel::from_shared(format!("http://{address}"))
                    .expect("an endpoint")
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .expect("connects"),
            );
        }
        // Warm both paths (connections, the store's caches) before timing.
        round(&channels, &customers, Side::Kinfold, length / 2, &server).await;
        round(&channels, &customers, Side::Baseline, length / 2, &server).await;
        let mut kinfold = Vec::with_capacity(rounds);
        let mut baseline = Vec::with_capacity(rounds);
        for number in 0..rounds {
            let order = if number % 2 == 0 {
                [Side::Kinfold, Side::Baseline]
            } else {
                [Side::Baseline, Side::Kinfold]
            };
            for side in order {
                let measured = round(&channels, &customers, side, length, &server).await;
                println!(
                    "  round {}: {:?} {:.0} calls/s, server thread busy {:.0}%, p50 {} us, p99 {} us",
                    number + 1,
                    side,
                    measured.rate,
                    measured.busy * 100.0,
                    measured.p50.as_micros(),
                    measured.p99.as_micros()
                );
                match side {
                    Side::Kinfold => kinfold.push(measured),
                    Side::Baseline => baseline.push(measured),
                }
            }
        }
        let middle = |rounds: &mut Vec<Round>| {
            rounds.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            rounds[rounds.len() / 2]
        };
        let kinfold = middle(&mut kinfold);
        let baseline = middle(&mut baseline);
        let show = |name: &str, round: &Round| {
            println!(
                "  {name} {:>8.0} calls/s, p50 {:>5} us, p99 {:>5} us; server thread busy {:>3.0}%: {:>6.0} calls per server core-second",
                round.rate,
                round.p50.as_micros(),
                round.p99.as_micros(),
                round.busy * 100.0,
                round.rate / round.busy
            );
        };
        show("kinfold GetProfile:", &kinfold);
        show("health Check:      ", &baseline);
        println!(
            "  kinfold / baseline throughput: {:.2} (goal: GetProfile >= 20000 calls/s, p99 <= 5000 us, one core)",
            kinfold.rate / baseline.rate
        );
    });
}

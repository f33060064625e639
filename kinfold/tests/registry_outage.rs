//! The ingest stage with its schema registry elsewhere (by URL) when that registry cannot be
//! reached: the records whose writer schema it has to fetch wait, their batches retried, and
//! none of them is dead-lettered; once the registry is back, every one lands in the canonical
//! log. The registry is a real Kinfold process; between it and the stage sits a TCP relay the
//! test can cut, because a registry cannot be made unreachable on demand.

use bytes::Bytes;
use kinfold_core::EventFamily;
use kinfold_core::ports::{EventLog, GroupOptions, OutgoingRecord};
use kinfold_core::stage::{StageConfig, StageStatus};
use kinfold_core::time::FixedClock;
use kinfold_ingest::model::decode_json_event;
use kinfold_ingest::stage::{IngestProcessor, run_ingest_stage};
use kinfold_ingest::{IngestLimits, IngestWriter, Intake, Topics};
use kinfold_schemas::codec::{Codecs, family_subject};
use kinfold_schemas::{Catalog, SchemaRegistry, frame};
use kinfold_storage::EmbeddedDatabase;
use kinfold_tests::{Server, total_records};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");
const SOURCE: &str = "pos.transactions";
const RECORDS: u32 = 200;

/// A TCP relay to `upstream` that can be cut: while `up` is false it closes every connection
/// it accepts, and cutting it closes the connections it is relaying.
async fn relay(upstream: String, up: watch::Receiver<bool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            if !*up.borrow() {
                drop(client);
                continue;
            }
            let upstream = upstream.clone();
            let mut up = up.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = up.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    format!("http://{address}")
}

/// A POS sale as the current schema encodes it.
fn sale(serial: u32) -> kinfold_core::event::EventBody {
    decode_json_event(
        &serde_json::json!({
            "type": "pos.transaction", "kind": "SALE", "brand": "b", "store_id": "S1",
            "till_id": "T1", "serial": serial.to_string(), "business_day": "2026-11-20",
            "occurred_at_local": "2026-11-20T09:00:00", "currency": "CNY",
            "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 100}], "total_minor": 100
        })
        .to_string(),
    )
    .expect("a valid sale")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_delays_records_and_dead_letters_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry_server = tokio::task::spawn_blocking({
        let data = dir.path().join("registry");
        move || Server::start(BINARY.as_ref(), &data).expect("the registry process starts")
    })
    .await
    .expect("started");
    let (set_up, up) = watch::channel(true);
    let upstream = registry_server
        .url
        .strip_prefix("http://")
        .expect("http url")
        .to_owned();
    let relayed = relay(upstream, up).await;

    // A point-of-sale system registers its own version of the POS schema (one more optional
    // field at the end) straight with the registry: the stage has never seen its id.
    let subject = family_subject(EventFamily::PosTransaction);
    let catalog = Catalog::embedded();
    let current = catalog.subject(subject).expect("pos subject").current();
    let mut evolved: serde_json::Value = serde_json::from_str(current).expect("schema json");
    evolved["fields"].as_array_mut().expect("fields").push(
        serde_json::json!({"name": "till_note", "type": ["null", "string"], "default": null}),
    );
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/registry/subjects/{subject}/versions",
            registry_server.url
        ))
        .json(&serde_json::json!({"schema": evolved.to_string()}))
        .send()
        .await
        .expect("registers")
        .json()
        .await
        .expect("json");
    let writer_id = u32::try_from(answer["id"].as_u64().expect("an id")).expect("u32");

    let database = EmbeddedDatabase::open(&dir.path().join("stage")).expect("opens");
    let log: Arc<dyn EventLog> = Arc::new(database.log());
    let kv = Arc::new(database.kv());
    let registry =
        Arc::new(SchemaRegistry::open_remote(&format!("{relayed}/registry")).expect("remote"));
    registry.register_catalog(&catalog).await.expect("catalog");
    let writer = IngestWriter::start(log.clone(), kv, &registry, Topics::default())
        .await
        .expect("writer");
    let intake = Intake::new(
        registry.clone(),
        IngestLimits::default(),
        Arc::new(FixedClock(1_795_176_000_000_000)),
    );

    // Records framed with that id: the current encoding plus the new field's null branch
    // (Avro writes a record's fields in order, a union as its branch index, 0 here).
    let codecs = Codecs::new();
    log.ensure_topic(SOURCE, 4).await.expect("source topic");
    let records = (0..RECORDS)
        .map(|serial| {
            let mut datum = codecs.encode_family(&sale(serial)).expect("encodes");
            datum.push(0);
            OutgoingRecord {
                key: Some(Bytes::from(format!("till-{}", serial % 7))),
                value: Bytes::from(frame(writer_id, &datum)),
                ..OutgoingRecord::default()
            }
        })
        .collect();
    log.append(SOURCE, records).await.expect("produce");

    set_up.send(false).expect("cut");
    let (stop, shutdown) = watch::channel(false);
    let mut config = StageConfig::new("ingest");
    config.max_backoff = Duration::from_millis(500);
    let status = Arc::new(StageStatus::default());
    let stage = tokio::spawn(run_ingest_stage(
        log.clone(),
        IngestProcessor::new(intake, writer),
        GroupOptions::new("kinfold-ingest", vec![SOURCE.to_owned()]),
        config,
        status.clone(),
        shutdown,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(total_records(log.as_ref(), "events.canonical").await, 0);
    assert_eq!(
        total_records(log.as_ref(), "events.dlq").await,
        0,
        "nothing dead-lettered while the registry is away"
    );

    set_up.send(true).expect("restore");
    let deadline = Instant::now() + Duration::from_secs(60);
    while total_records(log.as_ref(), "events.canonical").await < u64::from(RECORDS) {
        assert!(Instant::now() < deadline, "the records did not land");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).expect("stop");
    let report = stage.await.expect("stage task").expect("stage ran");
    assert!(
        report.retries >= 2,
        "batches retried during the outage: {report:?}"
    );
    assert_eq!(report.records, u64::from(RECORDS));
    assert_eq!(
        total_records(log.as_ref(), "events.canonical").await,
        u64::from(RECORDS)
    );
    assert_eq!(total_records(log.as_ref(), "events.dlq").await, 0);
    assert!(
        registry.schema_by_id(writer_id).is_some(),
        "the writer schema was fetched once the registry was back"
    );
    tokio::task::spawn_blocking(move || registry_server.stop())
        .await
        .expect("joined")
        .expect("the registry process stops");
}

//! Valid, duplicate and broken events of every family posted over HTTP (JSON and framed
//! Avro) by several clients while `kinfold serve` is killed with SIGKILL and restarted, three
//! times. Afterwards every acknowledged input is in the canonical log or the dead-letter log,
//! none is there twice, none is lost, and every rejection has a reason.

use kinfold_benches::generator::{Generator, GeneratorConfig};
use kinfold_core::event::EventBody;
use kinfold_ingest::model::JsonEvent;
use kinfold_schemas::codec::{Codecs, family_subject};
use kinfold_tests::{Server, dump_log};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");
const VALID_EVENTS: usize = 2_400;
const BATCH: usize = 25;
const CLIENTS: usize = 3;
const KILLS: usize = 3;

/// What an input is expected to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Valid,
    Broken,
}

#[derive(Debug, Clone)]
enum Payload {
    Json(String),
    Avro(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Input {
    class: Class,
    payload: Payload,
}

impl Input {
    fn bytes(&self) -> Vec<u8> {
        match &self.payload {
            Payload::Json(text) => text.clone().into_bytes(),
            Payload::Avro(bytes) => bytes.clone(),
        }
    }
}

fn json(body: &EventBody) -> String {
    serde_json::to_string(&JsonEvent::from(body.clone())).expect("serialises")
}

/// A broken variant of `body`, one kind of breakage per call.
fn broken(body: &EventBody, variant: usize) -> String {
    let mut value: Value = serde_json::from_str(&json(body)).expect("json");
    let object = value.as_object_mut().expect("object");
    match variant % 7 {
        0 => {
            // A required field missing.
            let required = ["brand", "app_id", "order_id", "refund_id", "member_card"];
            let field = required
                .into_iter()
                .find(|f| object.contains_key(*f))
                .expect("a required field");
            object.remove(field);
        }
        1 => {
            // A negative or absurd amount.
            for field in ["total_minor", "amount_minor", "points_delta"] {
                if object.contains_key(field) {
                    object.insert(
                        field.into(),
                        Value::from(if variant.is_multiple_of(2) {
                            -5
                        } else {
                            i64::MAX / 2
                        }),
                    );
                }
            }
            if object.get("type") == Some(&Value::from("wechat.event")) {
                object.insert("event_type".into(), Value::from("LOCATION"));
                object.insert("latitude".into(), Value::from(123.0));
                object.insert("longitude".into(), Value::from(500.0));
                object.insert("coordinate_system".into(), Value::from("WGS84"));
            }
            if object.get("type") == Some(&Value::from("membership.event")) {
                object.insert("event_type".into(), Value::from("STORED_VALUE_SPENT"));
                object.insert("amount_minor".into(), Value::from(-100));
                object.insert("currency".into(), Value::from("CNY"));
            }
        }
        2 => {
            // Far in the future.
            for field in ["occurred_at", "occurred_at_local"] {
                if object.contains_key(field) {
                    let future = if field == "occurred_at" {
                        Value::from(4_102_444_800_000_000i64)
                    } else {
                        Value::from("2099-01-01T00:00:00")
                    };
                    object.insert(field.into(), future);
                }
            }
        }
        3 => {
            // An over-long field.
            let long = "x".repeat(5_000);
            for field in ["brand", "app_id"] {
                if object.contains_key(field) {
                    object.insert(field.into(), Value::from(long.clone()));
                }
            }
        }
        4 => {
            object.insert("type".into(), Value::from("pos.unknown"));
        }
        5 => {
            return format!("{{\"type\": \"pos.transaction\", \"truncated\": {variant}");
        }
        _ => {
            object.insert("currency".into(), Value::from("yuan"));
            if object.get("type") == Some(&Value::from("wechat.event")) {
                object.insert("app_id".into(), Value::from(""));
            }
            if object.get("type") == Some(&Value::from("membership.event")) {
                object.insert("event_ref".into(), Value::from(" "));
            }
        }
    }
    value.to_string()
}

fn schema_ids(url: &str) -> HashMap<&'static str, u32> {
    let client = reqwest::blocking::Client::new();
    let mut ids = HashMap::new();
    for family in kinfold_core::EventFamily::ALL {
        let subject = family_subject(family);
        let answer: Value = client
            .get(format!("{url}/registry/subjects/{subject}/versions/latest"))
            .send()
            .expect("registry answers")
            .json()
            .expect("json");
        ids.insert(subject, answer["id"].as_u64().expect("id") as u32);
    }
    ids
}

fn inputs(schema_ids: &HashMap<&'static str, u32>) -> Vec<Input> {
    let mut generator = Generator::new(GeneratorConfig {
        customers: 300,
        seed: 11,
        ..GeneratorConfig::default()
    });
    let codecs = Codecs::new();
    let events = generator.take_events(VALID_EVENTS);
    let mut inputs = Vec::new();
    for (index, body) in events.iter().enumerate() {
        let payload = if index % 5 == 0 {
            let id = schema_ids[family_subject(body.family())];
            let datum = codecs.encode_family(body).expect("encodes");
            Payload::Avro(kinfold_schemas::frame(id, &datum))
        } else {
            Payload::Json(json(body))
        };
        inputs.push(Input {
            class: Class::Valid,
            payload,
        });
        if index % 10 == 3 {
            inputs.push(Input {
                class: Class::Broken,
                payload: Payload::Json(broken(body, index / 10)),
            });
        }
        if index % 41 == 7 {
            let mut bad_magic = vec![1u8, 0, 0, 0, 1];
            bad_magic.extend_from_slice(format!("bad magic {index}").as_bytes());
            inputs.push(Input {
                class: Class::Broken,
                payload: Payload::Avro(bad_magic),
            });
            let mut unknown_id = vec![0u8, 0, 0, 0x7f, 0x7f];
            unknown_id.extend_from_slice(format!("unknown id {index}").as_bytes());
            inputs.push(Input {
                class: Class::Broken,
                payload: Payload::Avro(unknown_id),
            });
        }
    }
    // Duplicates: every 9th valid input again, later in the stream.
    let again: Vec<Input> = inputs
        .iter()
        .filter(|input| input.class == Class::Valid)
        .step_by(9)
        .cloned()
        .collect();
    inputs.extend(again);
    inputs
}

fn post(client: &reqwest::blocking::Client, url: &str, batch: &[Input]) -> Option<Vec<Value>> {
    // JSON inputs go as one JSON array; Avro ones as length-prefixed frames.
    let is_avro = matches!(batch[0].payload, Payload::Avro(_));
    let request = if is_avro {
        let mut body = Vec::new();
        for input in batch {
            let bytes = input.bytes();
            body.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            body.extend_from_slice(&bytes);
        }
        client
            .post(format!("{url}/v1/events"))
            .header("content-type", "application/vnd.kinfold.avro-frames")
            .body(body)
    } else {
        let items: Vec<String> = batch
            .iter()
            .map(|input| match &input.payload {
                Payload::Json(text) => text.clone(),
                Payload::Avro(_) => unreachable!("batches are of one format"),
            })
            .collect();
        if items
            .iter()
            .any(|text| serde_json::from_str::<Value>(text).is_err())
        {
            // Not JSON: sent alone, and answered as one rejection.
            assert_eq!(items.len(), 1);
            client
                .post(format!("{url}/v1/events"))
                .header("content-type", "application/json")
                .body(items[0].clone())
        } else {
            client
                .post(format!("{url}/v1/events"))
                .header("content-type", "application/json")
                .body(format!("[{}]", items.join(",")))
        }
    };
    let response = request.timeout(Duration::from_secs(20)).send().ok()?;
    let status = response.status().as_u16();
    if status != 202 && status != 400 {
        return None;
    }
    let answer: Value = response.json().ok()?;
    Some(answer["results"].as_array()?.clone())
}

/// Groups inputs into batches of one format; unparsable JSON goes alone.
fn batches(inputs: Vec<Input>) -> Vec<Vec<Input>> {
    let mut batches = Vec::new();
    let (mut json_batch, mut avro_batch) = (Vec::new(), Vec::new());
    for input in inputs {
        match &input.payload {
            Payload::Json(text) if serde_json::from_str::<Value>(text).is_err() => {
                batches.push(vec![input])
            }
            Payload::Json(_) => {
                json_batch.push(input);
                if json_batch.len() == BATCH {
                    batches.push(std::mem::take(&mut json_batch));
                }
            }
            Payload::Avro(_) => {
                avro_batch.push(input);
                if avro_batch.len() == BATCH {
                    batches.push(std::mem::take(&mut avro_batch));
                }
            }
        }
    }
    batches.extend(
        [json_batch, avro_batch]
            .into_iter()
            .filter(|batch| !batch.is_empty()),
    );
    batches
}

#[test]
fn acknowledged_events_survive_sigkill_once_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(BINARY.as_ref(), dir.path()).expect("kinfold starts");
    let url = Arc::new(RwLock::new(server.url.clone()));
    let ids = schema_ids(&server.url);
    let all_inputs = inputs(&ids);
    let total_inputs = all_inputs.len();
    let queue = Arc::new(Mutex::new(batches(all_inputs)));
    let acknowledged: Arc<Mutex<Vec<(Input, Value)>>> = Arc::default();
    let acked_batches = Arc::new(AtomicUsize::new(0));
    let failed_posts = Arc::new(AtomicUsize::new(0));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, queue, acknowledged, acked_batches, failed_posts) = (
                url.clone(),
                queue.clone(),
                acknowledged.clone(),
                acked_batches.clone(),
                failed_posts.clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                loop {
                    let Some(batch) = queue.lock().expect("queue").pop() else {
                        return;
                    };
                    // Retry until acknowledged: the server may be dead or restarting.
                    loop {
                        let current = url.read().expect("url").clone();
                        if let Some(results) = post(&client, &current, &batch) {
                            assert_eq!(results.len(), batch.len(), "one result per input");
                            let mut acknowledged = acknowledged.lock().expect("acks");
                            acknowledged.extend(batch.iter().cloned().zip(results));
                            acked_batches.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        failed_posts.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();

    let mut server = Some(server);
    let total_batches = queue.lock().expect("queue").len() + CLIENTS;
    for kill in 1..=KILLS {
        let threshold = total_batches * kill / (KILLS + 1);
        while acked_batches.load(Ordering::SeqCst) < threshold {
            std::thread::sleep(Duration::from_millis(2));
        }
        server.take().expect("running").kill().expect("sigkill");
        let restarted = Server::start(BINARY.as_ref(), dir.path()).expect("kinfold restarts");
        *url.write().expect("url") = restarted.url.clone();
        server = Some(restarted);
    }
    for client in clients {
        client.join().expect("client thread");
    }
    server
        .take()
        .expect("running")
        .stop()
        .expect("graceful stop");

    let acknowledged = acknowledged.lock().expect("acks").clone();
    assert_eq!(
        acknowledged.len(),
        total_inputs,
        "every input was acknowledged in the end"
    );
    assert!(
        failed_posts.load(Ordering::SeqCst) > 0,
        "the kills interrupted some requests"
    );

    // Classify the acknowledgements.
    let mut accepted_ids = BTreeSet::new();
    let mut dead_letter_ids = BTreeSet::new();
    let mut distinct_valid = BTreeSet::new();
    let mut distinct_broken = BTreeSet::new();
    for (input, result) in &acknowledged {
        match input.class {
            Class::Valid => {
                distinct_valid.insert(input.bytes());
                let status = result["status"].as_str().expect("status");
                assert!(
                    status == "accepted" || status == "duplicate",
                    "valid input became {result}"
                );
                accepted_ids.insert(result["event_id"].as_str().expect("id").to_owned());
            }
            Class::Broken => {
                distinct_broken.insert(input.bytes());
                assert_eq!(result["status"], "rejected", "broken input became {result}");
                assert!(
                    !result["reason"].as_str().unwrap_or_default().is_empty(),
                    "{result}"
                );
                assert!(
                    !result["reason_code"]
                        .as_str()
                        .unwrap_or_default()
                        .is_empty(),
                    "{result}"
                );
                dead_letter_ids.insert(result["dead_letter_id"].as_str().expect("id").to_owned());
            }
        }
    }

    // The logs hold exactly what was acknowledged, once each.
    let canonical = dump_log(BINARY.as_ref(), dir.path(), "canonical").expect("dump canonical");
    let mut canonical_ids = BTreeMap::new();
    for entry in &canonical {
        let id = entry["event"]["event_id"].as_str().expect("id").to_owned();
        *canonical_ids.entry(id).or_insert(0) += 1;
    }
    let twice: Vec<_> = canonical_ids
        .iter()
        .filter(|(_, count)| **count > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "events in the canonical log more than once: {twice:?}"
    );
    let stored: BTreeSet<String> = canonical_ids.into_keys().collect();
    assert_eq!(stored, accepted_ids, "canonical log = acknowledged events");
    assert_eq!(
        stored.len(),
        distinct_valid.len(),
        "one canonical event per distinct valid input"
    );

    let dead = dump_log(BINARY.as_ref(), dir.path(), "dlq").expect("dump dlq");
    let mut dead_ids = BTreeSet::new();
    for letter in &dead {
        assert!(
            !letter["reason"].as_str().unwrap_or_default().is_empty(),
            "{letter}"
        );
        assert!(
            dead_ids.insert(letter["dead_letter_id"].as_str().expect("id").to_owned()),
            "dead letter twice: {letter}"
        );
    }
    assert_eq!(
        dead_ids, dead_letter_ids,
        "dead-letter log = acknowledged rejections"
    );
    assert_eq!(
        dead_ids.len(),
        distinct_broken.len(),
        "one dead letter per distinct broken input"
    );
}

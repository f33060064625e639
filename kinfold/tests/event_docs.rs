//! `docs/events.md` documents the JSON form of every event type with an example each. This test
//! holds the document to the code: every example must be accepted by the ingest rules, and
//! every event type must have one. `KINFOLD_BLESS=1` rewrites the examples from the generator.

use kinfold_benches::generator::{Generator, GeneratorConfig};
use kinfold_core::event::{
    EventBody, MembershipEventType, OrderStatus, PosTransactionKind, WechatEventType,
};
use kinfold_ingest::IngestLimits;
use kinfold_ingest::model::{JsonEvent, canonicalise, decode_json_event};
use std::collections::BTreeMap;
use std::path::PathBuf;

const INTRO: &str = include_str!("../../docs/events.intro.md");

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/events.md")
}

/// Every event type Kinfold knows, as `EventBody::event_type` spells them.
fn all_event_types() -> Vec<String> {
    let mut types: Vec<String> = PosTransactionKind::ALL
        .iter()
        .map(|k| format!("pos.{}", k.as_str()))
        .collect();
    types.extend(
        OrderStatus::ALL
            .iter()
            .map(|s| format!("ecom.order.{}", s.as_str())),
    );
    types.push("ecom.refund.succeeded".to_owned());
    types.extend(
        WechatEventType::ALL
            .iter()
            .map(|t| format!("wechat.{}", t.as_str())),
    );
    types.extend(
        MembershipEventType::ALL
            .iter()
            .map(|t| format!("membership.{}", t.as_str())),
    );
    types
}

fn bless() {
    let mut examples: BTreeMap<String, EventBody> = BTreeMap::new();
    let mut generator = Generator::new(GeneratorConfig {
        customers: 200,
        ..GeneratorConfig::default()
    });
    let wanted = all_event_types();
    for _ in 0..200_000 {
        let body = generator.next_event();
        let event_type = body.event_type();
        // Examples show clean identifiers; junk ones are documented above.
        let clean = canonicalise(body.clone(), "docs", i64::MAX / 2, &IngestLimits::default())
            .is_ok_and(|canonical| canonical.dropped.is_empty());
        if clean && !examples.contains_key(&event_type) {
            examples.insert(event_type, body);
        }
        if examples.len() == wanted.len() {
            break;
        }
    }
    let mut document = INTRO.to_owned();
    for event_type in &wanted {
        let body = examples
            .get(event_type)
            .unwrap_or_else(|| panic!("the generator made no {event_type}"));
        let json = serde_json::to_string_pretty(&JsonEvent::from(body.clone())).expect("json");
        document.push_str(&format!("\n### `{event_type}`\n\n```json\n{json}\n```\n"));
    }
    std::fs::write(doc_path(), document).expect("writes docs/events.md");
}

#[test]
fn every_event_type_has_an_example_that_ingest_accepts() {
    if std::env::var("KINFOLD_BLESS").as_deref() == Ok("1") {
        bless();
    }
    let document = std::fs::read_to_string(doc_path()).expect("docs/events.md exists");
    let mut covered = Vec::new();
    let mut rest = document.as_str();
    while let Some(start) = rest.find("```json\n") {
        let after = &rest[start + 8..];
        let end = after.find("\n```").expect("closed code block");
        let example = &after[..end];
        let body = decode_json_event(example)
            .unwrap_or_else(|e| panic!("example does not decode: {e}\n{example}"));
        let receive_time = kinfold_core::time::Clock::now_micros(&kinfold_core::time::SystemClock);
        let canonical = canonicalise(body, "docs", receive_time, &IngestLimits::default())
            .unwrap_or_else(|e| panic!("example is rejected: {e}\n{example}"));
        let heading = format!("### `{}`", canonical.event.event_type);
        assert!(
            rest[..start].contains(&heading),
            "example of {} is under the wrong heading",
            canonical.event.event_type
        );
        covered.push(canonical.event.event_type);
        rest = &after[end..];
    }
    let mut missing = all_event_types();
    missing.retain(|event_type| !covered.contains(event_type));
    assert!(
        missing.is_empty(),
        "event types without an example in docs/events.md: {missing:?}"
    );
}

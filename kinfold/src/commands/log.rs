//! `kinfold log dump`: the canonical, dead-letter, resolved or identity-changes log as JSON
//! lines, for audits and tests.

use crate::app::App;
use crate::cli::LogTopic;
use crate::config::Config;
use anyhow::Context;
use base64::Engine;
use kinfold_identity::records::ResolvedMarker;
use kinfold_schemas::codec::{decode_framed_canonical, decode_framed_dead_letter};
use serde_json::json;
use std::io::Write;

const CHUNK: usize = 5_000;

pub async fn dump(config: Config, topic: LogTopic) -> anyhow::Result<()> {
    let app = App::open(config).await?;
    let identity = kinfold_identity::stage::IdentityTopics::default();
    let name = match topic {
        LogTopic::Canonical => app.config.topics.canonical.clone(),
        LogTopic::Dlq => app.config.topics.dlq.clone(),
        LogTopic::Resolved => identity.resolved,
        LogTopic::IdentityChanges => identity.changes,
    };
    let log = &app.backends.log;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for partition in 0..log.partitions(&name).await? {
        let mut next = 0;
        loop {
            let records = log.read(&name, partition, next, CHUNK).await?;
            let Some(last) = records.last() else {
                break;
            };
            next = last.offset + 1;
            for record in &records {
                let line = match topic {
                    LogTopic::Canonical => {
                        let event = decode_framed_canonical(&record.value, &app.registry)
                            .with_context(|| {
                                format!("{name}/{partition}@{} does not decode", record.offset)
                            })?;
                        json!({"partition": partition, "offset": record.offset, "event": event})
                    }
                    LogTopic::Resolved => {
                        let customer = record
                            .key
                            .as_ref()
                            .map(|key| String::from_utf8_lossy(key).into_owned());
                        match ResolvedMarker::of_record(&record.value) {
                            Some(marker) => {
                                let marker = marker.with_context(|| {
                                    format!("{name}/{partition}@{} is not a marker", record.offset)
                                })?;
                                json!({"partition": partition, "offset": record.offset, "customer": customer, "marker": marker})
                            }
                            None => {
                                let event = decode_framed_canonical(&record.value, &app.registry)
                                    .with_context(|| {
                                    format!("{name}/{partition}@{} does not decode", record.offset)
                                })?;
                                json!({"partition": partition, "offset": record.offset, "customer": customer, "event": event})
                            }
                        }
                    }
                    LogTopic::IdentityChanges => {
                        let change: serde_json::Value = serde_json::from_slice(&record.value)
                            .with_context(|| {
                                format!("{name}/{partition}@{} is not json", record.offset)
                            })?;
                        json!({"partition": partition, "offset": record.offset, "change": change})
                    }
                    LogTopic::Dlq => {
                        let letter = decode_framed_dead_letter(&record.value, &app.registry)
                            .with_context(|| {
                                format!("{name}/{partition}@{} does not decode", record.offset)
                            })?;
                        json!({
                            "partition": partition,
                            "offset": record.offset,
                            "dead_letter_id": letter.dead_letter_id,
                            "channel": letter.channel,
                            "line": letter.line,
                            "schema_id": letter.schema_id,
                            "content_type": letter.content_type,
                            "reason_code": letter.reason_code,
                            "reason": letter.reason,
                            "payload_base64": base64::engine::general_purpose::STANDARD.encode(&letter.payload),
                        })
                    }
                };
                writeln!(out, "{line}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

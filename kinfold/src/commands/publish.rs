//! `kinfold publish FILE`: send JSON lines or an Avro container file to a running server.

use crate::cli::{PublishArgs, PublishFormat};
use crate::http::events::AVRO_FRAMES_CONTENT_TYPE;
use anyhow::{Context, bail};
use kinfold_schemas::codec::{family_of_record, family_subject};
use serde_json::{Value, json};
use std::io::BufRead;

#[derive(Debug, Default)]
struct Totals {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
}

impl Totals {
    fn add(&mut self, answer: &Value) {
        self.accepted += answer["accepted"].as_u64().unwrap_or(0);
        self.duplicates += answer["duplicates"].as_u64().unwrap_or(0);
        self.rejected += answer["rejected"].as_u64().unwrap_or(0);
    }
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<Value> {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .context("cannot reach the kinfold server (is `kinfold serve` running?)")?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .context("the server's answer is not json")?;
    if status.is_server_error() {
        bail!("server answered {status}: {answer}");
    }
    Ok(answer)
}

pub async fn run(server: &str, args: &PublishArgs) -> anyhow::Result<()> {
    let format = args.format.unwrap_or_else(|| {
        if args.file.extension().is_some_and(|ext| ext == "avro") {
            PublishFormat::Avro
        } else {
            PublishFormat::Jsonl
        }
    });
    let client = reqwest::Client::new();
    let url = format!("{server}/v1/events");
    let batch = args.batch.max(1);
    let mut totals = Totals::default();
    match format {
        PublishFormat::Jsonl => {
            let file = std::fs::File::open(&args.file)
                .with_context(|| format!("cannot open {}", args.file.display()))?;
            let mut pending: Vec<String> = Vec::new();
            for line in std::io::BufReader::new(file).lines() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                if serde_json::from_str::<&serde_json::value::RawValue>(&line).is_err() {
                    // Sent alone so that it is rejected (and dead-lettered) on its own.
                    totals.add(&send(&client, &url, "application/json", line.into_bytes()).await?);
                    continue;
                }
                pending.push(line);
                if pending.len() >= batch {
                    let body = format!("[{}]", pending.join(","));
                    totals.add(&send(&client, &url, "application/json", body.into_bytes()).await?);
                    pending.clear();
                }
            }
            if !pending.is_empty() {
                let body = format!("[{}]", pending.join(","));
                totals.add(&send(&client, &url, "application/json", body.into_bytes()).await?);
            }
        }
        PublishFormat::Avro => {
            let file = std::fs::File::open(&args.file)
                .with_context(|| format!("cannot open {}", args.file.display()))?;
            let reader = apache_avro::Reader::new(std::io::BufReader::new(file))
                .context("not an avro container file")?;
            let schema = reader.writer_schema().clone();
            let record_name = schema
                .name()
                .map(|name| name.fullname(None))
                .unwrap_or_default();
            let family = family_of_record(&record_name).with_context(|| {
                format!("`{record_name}` is not an event family kinfold accepts")
            })?;
            let subject = family_subject(family);
            let registered = send(
                &client,
                &format!("{server}/registry/subjects/{subject}/versions"),
                "application/vnd.schemaregistry.v1+json",
                json!({"schema": schema.canonical_form()})
                    .to_string()
                    .into_bytes(),
            )
            .await?;
            let schema_id = registered["id"]
                .as_u64()
                .with_context(|| format!("the registry refused the file's schema: {registered}"))?
                as u32;
            let mut body = Vec::new();
            let mut in_batch = 0;
            for value in reader {
                let value = value.context("corrupt avro container file")?;
                let datum = apache_avro::to_avro_datum(&schema, value)?;
                let framed = kinfold_schemas::frame(schema_id, &datum);
                body.extend_from_slice(&(framed.len() as u32).to_be_bytes());
                body.extend_from_slice(&framed);
                in_batch += 1;
                if in_batch >= batch {
                    totals.add(
                        &send(
                            &client,
                            &url,
                            AVRO_FRAMES_CONTENT_TYPE,
                            std::mem::take(&mut body),
                        )
                        .await?,
                    );
                    in_batch = 0;
                }
            }
            if in_batch > 0 {
                totals.add(&send(&client, &url, AVRO_FRAMES_CONTENT_TYPE, body).await?);
            }
        }
    }
    if args.json {
        println!(
            "{}",
            json!({"accepted": totals.accepted, "duplicates": totals.duplicates, "rejected": totals.rejected})
        );
    } else {
        println!(
            "published {}: {} accepted, {} duplicates, {} rejected (see `kinfold dlq list`)",
            args.file.display(),
            totals.accepted,
            totals.duplicates,
            totals.rejected
        );
    }
    Ok(())
}

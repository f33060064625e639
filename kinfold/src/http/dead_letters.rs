//! `GET /v1/dlq`: dead letters with their origin and reason; `POST /v1/dlq/redrive`: submit
//! dead letters again (after the cause was fixed: a schema registered, a limit raised).

use super::HttpState;
use super::events::{AVRO_FRAMES_CONTENT_TYPE, split_frames};
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use kinfold_core::{DeadLetter, ErrorKind};
use kinfold_ingest::model::decode_json_request;
use kinfold_ingest::{Origin, Submission};
use kinfold_schemas::codec::decode_framed_dead_letter;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/v1/dlq", get(list))
        .route("/v1/dlq/redrive", post(redrive))
}

#[derive(Debug, Deserialize)]
pub struct Window {
    #[serde(default)]
    partition: u32,
    #[serde(default)]
    from: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

fn internal(message: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": message})),
    )
        .into_response()
}

async fn read_window(
    state: &HttpState,
    window: &Window,
) -> Result<Vec<(u64, DeadLetter)>, Response> {
    let topic = &state.app.config.topics.dlq;
    let records = state
        .app
        .backends
        .log
        .read(
            topic,
            window.partition,
            window.from,
            window.limit.min(10_000),
        )
        .await
        .map_err(|e| match e.fault() {
            kinfold_core::error::Fault::User => (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response(),
            _ => internal(format!("cannot read {topic}: {e}")),
        })?;
    records
        .into_iter()
        .map(|record| {
            decode_framed_dead_letter(&record.value, &state.app.registry)
                .map(|letter| (record.offset, letter))
                .map_err(|e| {
                    internal(format!(
                        "dead letter at offset {} does not decode: {e}",
                        record.offset
                    ))
                })
        })
        .collect()
}

fn letter_json(offset: u64, letter: &DeadLetter) -> Value {
    json!({
        "offset": offset,
        "dead_letter_id": letter.dead_letter_id,
        "received_at": letter.received_at,
        "channel": letter.channel,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "content_type": letter.content_type,
        "schema_id": letter.schema_id,
        "line": letter.line,
        "reason_code": letter.reason_code,
        "reason": letter.reason,
        "payload_base64": base64::engine::general_purpose::STANDARD.encode(&letter.payload),
        "payload_text": std::str::from_utf8(&letter.payload).ok(),
    })
}

async fn list(State(state): State<HttpState>, Query(window): Query<Window>) -> Response {
    match read_window(&state, &window).await {
        Ok(letters) => {
            let next = letters.last().map_or(window.from, |(offset, _)| offset + 1);
            let items: Vec<Value> = letters
                .iter()
                .map(|(offset, letter)| letter_json(*offset, letter))
                .collect();
            Json(json!({"partition": window.partition, "next": next, "dead_letters": items}))
                .into_response()
        }
        Err(response) => response,
    }
}

async fn redrive(State(state): State<HttpState>, Json(window): Json<Window>) -> Response {
    let letters = match read_window(&state, &window).await {
        Ok(letters) => letters,
        Err(response) => return response,
    };
    let intake = &state.app.intake;
    let mut frames: Vec<&[u8]> = Vec::new();
    for (_, letter) in &letters {
        let content_type = letter.content_type.as_deref().unwrap_or_default();
        if content_type == AVRO_FRAMES_CONTENT_TYPE {
            frames.extend(split_frames(&letter.payload).unwrap_or_default());
        } else if content_type.contains("avro") {
            frames.push(&letter.payload);
        }
    }
    if let Err(error) = intake.resolve_schemas(frames).await {
        return super::events::not_acknowledged(error);
    }
    let mut offsets = Vec::new();
    let mut submissions: Vec<Submission> = Vec::new();
    let mut skipped = Vec::new();
    for (offset, letter) in &letters {
        let origin = Origin {
            content_type: letter.content_type.clone(),
            line: letter.line,
            ..Origin::channel("redrive")
        };
        let content_type = letter.content_type.as_deref().unwrap_or("application/json");
        if letter.channel == "import" {
            skipped.push(json!({"offset": offset, "why": "rows of an import are redriven by importing the file again"}));
            continue;
        }
        // A whole request kept as one dead letter (too many items, broken framing) is split
        // again, so that each item gets its own result.
        if content_type == AVRO_FRAMES_CONTENT_TYPE {
            match split_frames(&letter.payload) {
                Ok(frames) => {
                    for frame in frames {
                        offsets.push(*offset);
                        submissions.push(intake.avro(frame, &origin));
                    }
                }
                Err(rejection) => {
                    skipped.push(json!({"offset": offset, "why": rejection.to_string()}))
                }
            }
        } else if content_type.contains("avro") {
            offsets.push(*offset);
            submissions.push(intake.avro(&letter.payload, &origin));
        } else if let Ok(items) = decode_json_request(&letter.payload, usize::MAX) {
            for item in items {
                offsets.push(*offset);
                submissions.push(intake.json(item.get(), &origin));
            }
        } else if let Ok(text) = std::str::from_utf8(&letter.payload) {
            // Still not JSON: submitted as it is, and rejected again with its reason.
            offsets.push(*offset);
            submissions.push(intake.json(text, &origin));
        } else {
            skipped.push(json!({"offset": offset, "why": "payload is not utf-8 json"}));
        }
    }
    match state.app.writer.submit(submissions).await {
        Ok(results) => {
            let results: Vec<Value> = offsets
                .iter()
                .zip(results)
                .map(|(offset, result)| json!({"offset": offset, "result": result}))
                .collect();
            let next = letters.last().map_or(window.from, |(offset, _)| offset + 1);
            Json(json!({"next": next, "redriven": results, "skipped": skipped})).into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

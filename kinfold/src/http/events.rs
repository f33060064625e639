//! `POST /v1/events`: JSON (one event or an array) or Avro in the Confluent wire format (one
//! framed record, or several each preceded by its length). Answers 202 with a result per item
//! once every item is durable in the canonical or the dead-letter log.

use super::HttpState;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kinfold_ingest::model::decode_json_request;
use kinfold_ingest::{IngestOutcome, Origin, RejectCode, Rejection, Submission};
use serde_json::json;

/// One Avro record in the Confluent wire format.
pub const AVRO_CONTENT_TYPES: [&str; 3] = [
    "application/vnd.confluent.avro",
    "application/avro",
    "avro/binary",
];
/// Several framed Avro records, each preceded by its length as a 4-byte big-endian integer.
pub const AVRO_FRAMES_CONTENT_TYPE: &str = "application/vnd.kinfold.avro-frames";

pub fn routes() -> Router<HttpState> {
    Router::new().route("/v1/events", post(post_events))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/json".to_owned())
}

/// Splits a length-prefixed sequence of frames.
pub fn split_frames(body: &[u8]) -> Result<Vec<&[u8]>, Rejection> {
    let mut frames = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let Some((length, tail)) = rest.split_first_chunk::<4>() else {
            return Err(Rejection::new(
                RejectCode::BadFraming,
                "truncated frame length",
            ));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if tail.len() < length {
            return Err(Rejection::new(
                RejectCode::BadFraming,
                format!("frame of {length} bytes but only {} left", tail.len()),
            ));
        }
        let (frame, after) = tail.split_at(length);
        frames.push(frame);
        rest = after;
    }
    Ok(frames)
}

async fn post_events(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = content_type(&headers);
    let origin = Origin {
        content_type: Some(content_type.clone()),
        ..Origin::channel("http")
    };
    let intake = &state.app.intake;
    let max_items = intake.limits().max_batch_items;
    let whole_body_rejection =
        |rejection: Rejection| intake.reject(&body, rejection, &origin, None, "unknown");

    let frames = if AVRO_CONTENT_TYPES.contains(&content_type.as_str()) {
        vec![&body[..]]
    } else if content_type == AVRO_FRAMES_CONTENT_TYPE {
        split_frames(&body).unwrap_or_default()
    } else {
        Vec::new()
    };
    if let Err(error) = intake.resolve_schemas(frames).await {
        return not_acknowledged(error);
    }
    let (submissions, failure_status) = if AVRO_CONTENT_TYPES.contains(&content_type.as_str()) {
        (vec![intake.avro(&body, &origin)], None)
    } else if content_type == AVRO_FRAMES_CONTENT_TYPE {
        match split_frames(&body) {
            Ok(frames) if frames.len() > max_items => {
                let rejection = Rejection::new(
                    RejectCode::BatchTooLarge,
                    format!(
                        "{} events in one request, more than {max_items}",
                        frames.len()
                    ),
                );
                (
                    vec![whole_body_rejection(rejection)],
                    Some(StatusCode::PAYLOAD_TOO_LARGE),
                )
            }
            Ok(frames) => (
                frames
                    .iter()
                    .map(|frame| intake.avro(frame, &origin))
                    .collect(),
                None,
            ),
            Err(rejection) => (
                vec![whole_body_rejection(rejection)],
                Some(StatusCode::BAD_REQUEST),
            ),
        }
    } else if content_type == "application/json" || content_type.ends_with("+json") {
        match decode_json_request(&body, max_items) {
            Ok(items) => (
                items
                    .iter()
                    .map(|item| intake.json(item.get(), &origin))
                    .collect(),
                None,
            ),
            Err(rejection) => {
                let status = if rejection.code == RejectCode::BatchTooLarge {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                (vec![whole_body_rejection(rejection)], Some(status))
            }
        }
    } else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({
                "error": format!(
                    "unsupported content type `{content_type}`: send application/json, {} or {AVRO_FRAMES_CONTENT_TYPE}",
                    AVRO_CONTENT_TYPES[0]
                )
            })),
        )
            .into_response();
    };
    respond(&state, submissions, failure_status).await
}

async fn respond(
    state: &HttpState,
    submissions: Vec<Submission>,
    failure_status: Option<StatusCode>,
) -> Response {
    match state.app.writer.submit(submissions).await {
        Ok(results) => {
            let count =
                |wanted: fn(&IngestOutcome) -> bool| results.iter().filter(|r| wanted(r)).count();
            let accepted = count(|r| matches!(r, IngestOutcome::Accepted { .. }));
            let duplicates = count(|r| matches!(r, IngestOutcome::Duplicate { .. }));
            let rejected = count(|r| matches!(r, IngestOutcome::Rejected { .. }));
            let status = failure_status.unwrap_or(StatusCode::ACCEPTED);
            (
                status,
                Json(json!({
                    "accepted": accepted,
                    "duplicates": duplicates,
                    "rejected": rejected,
                    "results": results,
                })),
            )
                .into_response()
        }
        Err(error) => not_acknowledged(error),
    }
}

/// 503: nothing of the request was taken; retrying is safe.
pub fn not_acknowledged(error: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(json!({"error": format!("not acknowledged; retrying is safe (duplicates are recognised): {error}")})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_truncation_is_caught() {
        let mut body = Vec::new();
        for frame in [&b"abc"[..], b"", b"de"] {
            body.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            body.extend_from_slice(frame);
        }
        let frames = split_frames(&body).expect("splits");
        assert_eq!(frames, vec![&b"abc"[..], b"", b"de"]);
        assert!(split_frames(&body[..body.len() - 1]).is_err());
        assert!(split_frames(&[0, 0]).is_err());
    }
}

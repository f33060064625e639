//! `/healthz`, `/readyz`, `/metrics`.

use super::HttpState;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::atomic::Ordering;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    if !state.app.backends.log.is_healthy() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the event log failed; restart\n".to_owned(),
        )
    } else if !state.ready.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned())
    } else if let Some(stage) = state.stages.iter().find(|stage| !stage.status.is_ready()) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the {} stage is waiting for its partitions and their positions\n",
                stage.name
            ),
        )
    } else {
        (StatusCode::OK, "ready\n".to_owned())
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    match &state.metrics {
        Some(handle) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics are not enabled in this process\n".to_owned(),
        ),
    }
}

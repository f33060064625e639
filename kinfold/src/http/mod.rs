//! The HTTP server: ingest, the schema registry subset, dead letters, health and metrics.
//! Follows the `run(listener, shutdown)` shape: the caller binds, the server drains on
//! shutdown.

mod dead_letters;
pub mod events;
mod ops;
mod registry;

use crate::app::App;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::net::TcpListener;

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub app: App,
    pub metrics: Option<PrometheusHandle>,
    pub ready: Arc<AtomicBool>,
    /// The stages this process runs; `/readyz` waits for each to own its partitions.
    pub stages: Vec<crate::server::RunningStage>,
}

/// The router of every endpoint.
pub fn router(state: HttpState) -> Router {
    let body_limit = state.app.config.ingest.max_body_bytes;
    let registry = match state.app.registry.remote_url() {
        None => registry::routes(),
        Some(url) => registry::elsewhere(url),
    };
    Router::new()
        .merge(events::routes())
        .merge(dead_letters::routes())
        .merge(ops::routes())
        .nest("/registry", registry)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and drains open requests.
pub async fn run(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

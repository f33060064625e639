//! `serve`: wire the app, bind the listeners, print where they are, run until a signal.

use crate::app::App;
use crate::config::Config;
use crate::http::{self, HttpState};
use anyhow::Context;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running server.
#[derive(Debug)]
pub struct Running {
    pub app: App,
    shutdown: watch::Sender<bool>,
    http_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Opens everything and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let metrics = crate::telemetry::init_metrics().ok();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind(&config.http.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.addr))?;
    let http_addr = listener.local_addr()?;
    let app = App::open(config).await?;
    let state = HttpState {
        app: app.clone(),
        metrics,
        ready: ready.clone(),
    };
    let (shutdown, mut shutdown_signal) = watch::channel(false);
    let http_task = tokio::spawn(http::run(listener, state, async move {
        let _ = shutdown_signal.wait_for(|stop| *stop).await;
    }));
    ready.store(true, Ordering::Release);
    // Where it listens, for people and for scripts; a closed stdout must not stop the server.
    let _ = writeln!(
        std::io::stdout(),
        "kinfold serving on {storage}\n  http  http://{http_addr}  (POST /v1/events, /registry, /metrics, /healthz, /readyz)\n  grpc  {grpc}: no gRPC services in this build yet; they arrive with the profile and segment stages",
        storage = app.config.storage.url,
        grpc = app.config.grpc.addr,
    );
    Ok(Running {
        app,
        shutdown,
        http_task,
    })
}

impl Running {
    /// Stops accepting, drains open requests, and waits for the server to end.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.http_task.await.context("http server task")??;
        tracing::info!("kinfold stopped");
        Ok(())
    }
}

/// `kinfold serve`.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    signal().await;
    running.stop().await
}

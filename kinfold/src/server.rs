//! `serve`: wire the app, bind the listeners, print where they are, run until a signal.

use crate::app::App;
use crate::config::Config;
use crate::grpc;
use crate::http::{self, HttpState};
use anyhow::Context;
use kinfold_core::ports::{EventLog, GroupOptions};
use kinfold_core::stage::{Processor, StageConfig, StageStatus, run_stage};
use kinfold_core::time::SystemClock;
use kinfold_identity::model::Rules;
use kinfold_identity::service::IdentityService;
use kinfold_identity::stage::{ForwardProcessor, IdentityTopics, ResolveProcessor};
use kinfold_ingest::stage::IngestProcessor;
use kinfold_profile::ProfileRules;
use kinfold_profile::cache::CustomerCache;
use kinfold_profile::service::ProfileService;
use kinfold_profile::stage::ProfileProcessor;
use kinfold_segments::eval::Stores;
use kinfold_segments::service::SegmentService;
use kinfold_segments::stage::{SegmentProcessor, SegmentStage, SegmentTopics, TriggersFile};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running server.
#[derive(Debug)]
pub struct Running {
    pub app: App,
    shutdown: watch::Sender<bool>,
    http_task: tokio::task::JoinHandle<std::io::Result<()>>,
    grpc_task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stage_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A running stage, as `/readyz` sees it.
#[derive(Debug, Clone)]
pub struct RunningStage {
    pub name: &'static str,
    pub status: Arc<StageStatus>,
}

/// Runs a stage until `shutdown`; after a failure it rejoins its group (in 1 s) rather than
/// taking the process down.
fn supervise<P: Processor>(
    name: &'static str,
    log: Arc<dyn EventLog>,
    processor: Arc<P>,
    options: GroupOptions,
    config: StageConfig,
    shutdown: watch::Receiver<bool>,
) -> (RunningStage, tokio::task::JoinHandle<()>) {
    let status = Arc::new(StageStatus::default());
    let task = tokio::spawn({
        let status = status.clone();
        async move {
            loop {
                let run = run_stage(
                    log.clone(),
                    processor.clone(),
                    options.clone(),
                    config.clone(),
                    status.clone(),
                    shutdown.clone(),
                )
                .await;
                match run {
                    Ok(report) => {
                        tracing::info!(stage = name, ?report, "stage stopped");
                        break;
                    }
                    Err(error) => {
                        tracing::error!(stage = name, %error, "stage failed; rejoining in 1 s");
                    }
                }
                if *shutdown.borrow() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    (RunningStage { name, status }, task)
}

/// Starts the ingest stage over the configured source topics.
async fn start_ingest(
    app: &App,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(RunningStage, tokio::task::JoinHandle<()>)> {
    let sources = &app.config.sources;
    for topic in &sources.topics {
        app.backends
            .log
            .ensure_topic(&topic.name, topic.partitions)
            .await
            .with_context(|| format!("source topic {}", topic.name))?;
    }
    let mut options = GroupOptions::new(
        sources.group.clone(),
        sources
            .topics
            .iter()
            .map(|topic| topic.name.clone())
            .collect(),
    );
    options.batch = sources.batch.max(1);
    options.drain_timeout = Duration::from_millis(sources.drain_timeout_ms);
    let mut config = StageConfig::new("ingest");
    config.max_in_flight = sources.max_in_flight.max(1);
    config.commit_interval = Duration::from_millis(sources.commit_interval_ms.max(1));
    let processor = Arc::new(IngestProcessor::new(app.intake.clone(), app.writer.clone()));
    Ok(supervise(
        "ingest",
        app.backends.log.clone(),
        processor,
        options,
        config,
        shutdown,
    ))
}

/// The consumer group that forwards canonical events to `identity.inputs`.
const FORWARD_GROUP: &str = "kinfold-identity-forward";

/// The identity stage's two parts, and its gRPC service.
type IdentityStage = (
    Vec<(RunningStage, tokio::task::JoinHandle<()>)>,
    IdentityService,
);

/// Starts the identity stage: forwarding canonical events to `identity.inputs`, and resolving
/// them there in order (one batch at a time) with the graph's state in the key-value store.
async fn start_identity(
    app: &App,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<IdentityStage> {
    let rules = if app.config.identity.rules.is_empty() {
        Rules::default_rules()
    } else {
        let path = &app.config.identity.rules;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the identity rule file {path}"))?;
        Rules::from_toml(&text)
            .with_context(|| format!("{path} is not a valid identity rule file"))?
    };
    let topics = IdentityTopics {
        canonical: app.config.topics.canonical.clone(),
        ..IdentityTopics::default()
    };
    topics
        .ensure(app.backends.log.as_ref())
        .await
        .context("identity topics")?;
    let log = app.backends.log.clone();
    let forward = supervise(
        "identity-forward",
        log.clone(),
        Arc::new(ForwardProcessor::new(
            log.clone(),
            topics.clone(),
            FORWARD_GROUP,
        )),
        GroupOptions::new(FORWARD_GROUP, vec![topics.canonical.clone()]),
        StageConfig::new("identity-forward"),
        shutdown.clone(),
    );
    let mut config = StageConfig::new("identity");
    // The graph folds identity.inputs in order.
    config.max_in_flight = 1;
    let processor = Arc::new(
        ResolveProcessor::new(log.clone(), app.registry.clone(), rules, topics.clone())
            .with_state(app.backends.kv.clone()),
    );
    let resolve = supervise(
        "identity",
        log.clone(),
        processor.clone(),
        GroupOptions::new("kinfold-identity", vec![topics.inputs.clone()]),
        config,
        shutdown,
    );
    let service = IdentityService::new(
        processor,
        resolve.0.status.clone(),
        log,
        app.backends.kv.clone(),
        topics,
    );
    Ok((vec![forward, resolve], service))
}

/// The profile rules at `path`, or the compiled-in ones for an empty path.
fn profile_rules(path: &str) -> anyhow::Result<ProfileRules> {
    if path.is_empty() {
        return Ok(ProfileRules::default_rules());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the profile rule file {path}"))?;
    ProfileRules::from_toml(&text)
        .with_context(|| format!("{path} is not a valid profile rule file"))
}

/// The profile stage's consumer group.
const PROFILE_GROUP: &str = "kinfold-profile";

/// The customers the profile stage writes, kept for the stages of this process: only on the
/// embedded log, where this process is the one writer of every customer (see
/// [`CustomerCache`]).
fn customer_cache(app: &App) -> Option<CustomerCache> {
    let embedded_log = app
        .config
        .storage
        .log
        .as_deref()
        .is_none_or(|log| log.starts_with("embedded://"));
    let events = app.config.profile.cache_events;
    (embedded_log && events > 0).then(|| CustomerCache::new(events))
}

/// Starts the profile stage over `events.resolved`.
async fn start_profile(
    app: &App,
    cache: Option<CustomerCache>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(RunningStage, tokio::task::JoinHandle<()>)> {
    let topics = IdentityTopics::default();
    // The topic is identity's; made here too, so that the stage may run on its own.
    app.backends
        .log
        .ensure_topic(&topics.resolved, topics.resolved_partitions)
        .await
        .context("events.resolved")?;
    // Where it says which customers changed, for the segment stage here or elsewhere.
    let segment_topics = SegmentTopics::default();
    app.backends
        .log
        .ensure_topic(&segment_topics.changed, segment_topics.changed_partitions)
        .await
        .context("profiles.changed")?;
    let mut config = StageConfig::new("profile");
    config.max_in_flight = kinfold_profile::stage::MAX_IN_FLIGHT;
    let mut processor = ProfileProcessor::new(
        app.backends.log.clone(),
        app.backends.kv.clone(),
        app.registry.clone(),
        topics.resolved.clone(),
    )
    .with_notices(segment_topics.changed);
    if let Some(cache) = cache {
        processor = processor.with_cache(cache);
    }
    let processor = Arc::new(processor);
    Ok(supervise(
        "profile",
        app.backends.log.clone(),
        processor,
        GroupOptions::new(PROFILE_GROUP, vec![topics.resolved]),
        config,
        shutdown,
    ))
}

/// Resolves on SIGINT or SIGTERM.
const SEGMENTS_GROUP: &str = "kinfold-segments";

/// How often the segment stage looks for due timers.
const WAKE_INTERVAL: Duration = Duration::from_secs(1);

/// The segment stage over `profiles.changed`, its timer loop (due wake-ups, and the
/// population on its schedule), and the stage itself (for the segment API).
type SegmentsStage = (
    (RunningStage, tokio::task::JoinHandle<()>),
    tokio::task::JoinHandle<()>,
    Arc<SegmentStage>,
);

async fn start_segments(
    app: &App,
    cache: Option<CustomerCache>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SegmentsStage> {
    let topics = SegmentTopics::default();
    topics
        .ensure(app.backends.log.as_ref())
        .await
        .context("segment topics")?;
    let stores = if app.config.segments.stores.is_empty() {
        Stores::default()
    } else {
        let path = &app.config.segments.stores;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the store list {path}"))?;
        Stores::from_toml(&text)
            .map_err(|reason| anyhow::anyhow!("{path} is not a valid store list: {reason}"))?
    };
    let mut stage = SegmentStage::new(
        app.backends.log.clone(),
        app.backends.kv.clone(),
        app.registry.clone(),
        profile_rules(&app.config.profile.rules)?,
        Arc::new(SystemClock),
        topics.clone(),
    )
    .with_stores(stores);
    if let Some(cache) = cache {
        stage = stage.with_cache(cache);
    }
    let stage = Arc::new(stage);
    if !app.config.segments.triggers.is_empty() {
        let path = &app.config.segments.triggers;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the trigger file {path}"))?;
        let file = TriggersFile::from_toml(&text)
            .with_context(|| format!("{path} is not a valid trigger file"))?;
        let (defined, removed) = stage
            .configure_triggers(&file)
            .await
            .with_context(|| format!("triggers of {path}"))?;
        tracing::info!(path, defined, removed, "triggers configured");
    }
    let mut config = StageConfig::new("segments");
    config.max_in_flight = kinfold_segments::stage::MAX_IN_FLIGHT;
    let running = supervise(
        "segments",
        app.backends.log.clone(),
        Arc::new(SegmentProcessor(stage.clone())),
        GroupOptions::new(SEGMENTS_GROUP, vec![topics.changed]),
        config,
        shutdown.clone(),
    );
    let refresh_every = i64::try_from(app.config.segments.population_refresh_secs.max(1))
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    let timers = tokio::spawn({
        let stage = stage.clone();
        let mut shutdown = shutdown;
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    () = tokio::time::sleep(WAKE_INTERVAL) => {}
                }
                match stage.wake_due().await {
                    Ok(tally) if tally.evaluated > 0 => {
                        tracing::debug!(?tally, "segment timers woke customers");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(%error, "segment timers; trying again"),
                }
                match stage.refresh_population_if_due(refresh_every).await {
                    Ok(tally) if tally.evaluated > 0 => {
                        tracing::info!(?tally, "segment population refreshed");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(%error, "segment population; trying again"),
                }
            }
        }
    });
    Ok((running, timers, stage))
}

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
    let grpc_listener = TcpListener::bind(&config.grpc.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.grpc.addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let app = App::open(config).await?;
    let mut services = grpc::Services::default();
    let (shutdown, mut shutdown_signal) = watch::channel(false);
    let mut stages = Vec::new();
    let mut stage_tasks = Vec::new();
    if app.config.serve.runs("ingest")? {
        let (stage, task) = start_ingest(&app, shutdown_signal.clone()).await?;
        stages.push(stage);
        stage_tasks.push(task);
    }
    if app.config.serve.runs("identity")? {
        let (parts, service) = start_identity(&app, shutdown_signal.clone()).await?;
        for (stage, task) in parts {
            stages.push(stage);
            stage_tasks.push(task);
        }
        services.identity = Some(service);
    }
    // Filled by the profile stage only: without it here, the segment stage finds nothing in it.
    let cache = app
        .config
        .serve
        .runs("profile")?
        .then(|| customer_cache(&app))
        .flatten();
    if app.config.serve.runs("profile")? {
        let (stage, task) = start_profile(&app, cache.clone(), shutdown_signal.clone()).await?;
        stages.push(stage);
        stage_tasks.push(task);
        services.profile = Some(ProfileService::new(
            app.backends.kv.clone(),
            app.registry.clone(),
            profile_rules(&app.config.profile.rules)?,
            services.identity.clone(),
            Arc::new(SystemClock),
        ));
    }
    if app.config.serve.runs("segments")? {
        let ((stage, task), timers, segments) =
            start_segments(&app, cache.clone(), shutdown_signal.clone()).await?;
        stages.push(stage);
        stage_tasks.push(task);
        stage_tasks.push(timers);
        services.segments = Some(SegmentService::new(segments));
    }
    let grpc_services: Vec<&str> = services
        .identity
        .iter()
        .map(|_| "kinfold.v1.IdentityService")
        .chain(services.profile.iter().map(|_| "kinfold.v1.ProfileService"))
        .chain(
            services
                .segments
                .iter()
                .map(|_| "kinfold.v1.SegmentService"),
        )
        .collect();
    let grpc_task = tokio::spawn(grpc::run(grpc_listener, services, {
        let mut shutdown = shutdown_signal.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
    }));
    let running_stages: Vec<&str> = stages.iter().map(|stage| stage.name).collect();
    let state = HttpState {
        app: app.clone(),
        metrics,
        ready: ready.clone(),
        stages,
    };
    let http_task = tokio::spawn(http::run(listener, state, async move {
        let _ = shutdown_signal.wait_for(|stop| *stop).await;
    }));
    ready.store(true, Ordering::Release);
    // Where it listens, for people and for scripts; a closed stdout must not stop the server.
    let _ = writeln!(
        std::io::stdout(),
        "kinfold serving on {storage}{log}\n  http  http://{http_addr}  (POST /v1/events, /registry, /metrics, /healthz, /readyz)\n  grpc  grpc://{grpc_addr}  ({grpc}grpc.health.v1.Health, server reflection v1 and v1alpha)\n  stages: {stages}",
        storage = app.config.storage.url,
        log = app
            .config
            .storage
            .log
            .as_deref()
            .map(|log| format!(", event log {log}"))
            .unwrap_or_default(),
        grpc = grpc_services
            .iter()
            .map(|service| format!("{service}, "))
            .collect::<String>(),
        stages = if running_stages.is_empty() {
            "none (HTTP only)".to_owned()
        } else {
            running_stages.join(", ")
        },
    );
    Ok(Running {
        app,
        shutdown,
        http_task,
        grpc_task,
        stage_tasks,
    })
}

impl Running {
    /// Stops accepting, drains open requests, and waits for the server to end.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        // Stages drain their in-flight batches, commit and leave their groups.
        for task in self.stage_tasks {
            task.await.context("stage task")?;
        }
        self.http_task.await.context("http server task")??;
        self.grpc_task.await.context("grpc server task")??;
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

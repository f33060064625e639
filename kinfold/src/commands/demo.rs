//! `kinfold demo`: serve, and stream a synthetic population of shoppers through every channel
//! (the generator the benchmarks use), with a small share of broken events so the dead-letter
//! log has something to show.

use crate::cli::DemoArgs;
use crate::config::Config;
use kinfold_benches::generator::{Generator, GeneratorConfig};
use kinfold_core::event::EventBody;
use kinfold_ingest::{IngestOutcome, Origin};
use std::time::Duration;

/// One event in this many is broken on purpose (a negative amount).
const BROKEN_EVERY: u64 = 97;
const BATCH: usize = 50;

fn break_event(body: &mut EventBody) {
    match body {
        EventBody::PosTransaction(t) => t.total_minor = -t.total_minor.max(1),
        EventBody::EcomOrder(o) => o.total_minor = -o.total_minor.max(1),
        EventBody::EcomRefund(r) => r.amount_minor = -r.amount_minor.max(1),
        EventBody::Wechat(w) => w.app_id.clear(),
        EventBody::Membership(m) => m.event_ref.clear(),
    }
}

pub async fn run(config: Config, args: &DemoArgs) -> anyhow::Result<()> {
    let running = crate::server::start(config).await?;
    let app = running.app.clone();
    let customers = args.customers;
    let rate = args.rate.max(1);
    let limit = args.events;
    let seed = args.seed;
    println!("demo: {customers} customers shopping at {rate} events/s (ctrl-c to stop)");
    let generator_task = tokio::spawn(async move {
        let start_micros = kinfold_core::time::Clock::now_micros(&kinfold_core::time::SystemClock)
            - 30 * 86_400 * 1_000_000;
        let mut generator = Generator::new(GeneratorConfig {
            customers,
            seed,
            start_micros,
            days: 30,
            ..GeneratorConfig::default()
        });
        let origin = Origin::channel("demo");
        let pause = Duration::from_secs_f64(BATCH as f64 / f64::from(rate));
        let mut interval = tokio::time::interval(pause);
        let (mut sent, mut accepted, mut rejected, mut duplicates) = (0u64, 0u64, 0u64, 0u64);
        loop {
            interval.tick().await;
            let mut batch = Vec::with_capacity(BATCH);
            for _ in 0..BATCH {
                if limit.is_some_and(|limit| sent >= limit) {
                    break;
                }
                let mut body = generator.next_event();
                sent += 1;
                if sent % BROKEN_EVERY == 0 {
                    break_event(&mut body);
                }
                let payload =
                    serde_json::to_vec(&kinfold_ingest::model::JsonEvent::from(body.clone()))
                        .unwrap_or_default();
                batch.push(app.intake.record(body, &payload, &origin, None));
            }
            if batch.is_empty() {
                println!(
                    "demo: generated {sent} events: {accepted} accepted, {duplicates} duplicates, {rejected} rejected; still serving"
                );
                return;
            }
            match app.writer.submit(batch).await {
                Ok(outcomes) => {
                    for outcome in outcomes {
                        match outcome {
                            IngestOutcome::Accepted { .. } => accepted += 1,
                            IngestOutcome::Duplicate { .. } => duplicates += 1,
                            IngestOutcome::Rejected { .. } => rejected += 1,
                        }
                    }
                }
                Err(error) => tracing::warn!(error = %error, "demo batch not stored"),
            }
            if sent % (u64::from(rate) * 10).max(BATCH as u64) < BATCH as u64 {
                println!(
                    "demo: {sent} events so far: {accepted} accepted, {duplicates} duplicates, {rejected} rejected"
                );
            }
        }
    });
    crate::server::signal().await;
    generator_task.abort();
    running.stop().await
}

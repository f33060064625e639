//! Identity resolution in memory: Kinfold's identity graph against petgraph's `UnionFind` plus
//! a `HashMap`, in the same run, on the same stream of link operations, on one core.
//!
//! The stream: the demo generator's events (every family, a population of 200,000 people,
//! every channel, so people meet themselves across POS, online shops and WeChat) canonicalised
//! as ingest does, each reduced to its event id and identifiers. A link operation is one
//! identifier of one event resolved to a customer.
//!
//! - Kinfold: `IdentityGraph::observe` for every event, with the default rules: blocked
//!   values, merge kinds, per-customer limits, survivors, refusals for review, every change
//!   recorded, the event's customer and the input kept for replay.
//! - baseline: each identifier mapped to a dense index by a `HashMap<Identifier, u32>` (cloned
//!   on first sight, as Kinfold clones it), the event's identifiers unioned with petgraph's
//!   `UnionFind`, and the event's root found and kept. No rules at all: the floor that any
//!   resolver with rules pays at least.
//!
//! Every run is a process of its own (this binary again, with `--side`), which makes the
//! stream and then times one side on it (the parent makes none): what one side's run leaves in the heap (free lists
//! to merge, memory kept or given back) cannot speed up or slow down the other's. Runs
//! alternate, each round is printed and the median of five is reported
//! (`KINFOLD_BENCH_QUICK=1`: a smaller stream, three runs). Every run checks its output:
//! events resolved and customers made.

use kinfold_benches::{Generator, GeneratorConfig, median, quick};
use kinfold_core::{EventId, Identifier};
use kinfold_identity::model::{IdentityGraph, Rules};
use kinfold_ingest::{IngestLimits, canonicalise};
use petgraph::unionfind::UnionFind;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The receive time given to `canonicalise`: 2027-01-01, after every generated event.
const RECEIVE_TIME: i64 = 1_798_761_600_000_000;

struct Stream {
    events: Vec<(EventId, Vec<Identifier>)>,
    links: usize,
}

fn stream(events: usize, customers: u32) -> Stream {
    let limits = IngestLimits::default();
    let mut generator = Generator::new(GeneratorConfig {
        customers,
        days: 365,
        ..GeneratorConfig::default()
    });
    let mut stream = Vec::with_capacity(events);
    while stream.len() < events {
        let Ok(canonical) = canonicalise(generator.next_event(), "bench", RECEIVE_TIME, &limits)
        else {
            continue;
        };
        if canonical.event.identifiers.is_empty() {
            continue;
        }
        stream.push((canonical.event.event_id, canonical.event.identifiers));
    }
    let links = stream.iter().map(|(_, ids)| ids.len()).sum();
    Stream {
        events: stream,
        links,
    }
}

/// Resolves the stream with Kinfold's graph; returns the time and the customers made.
fn kinfold_run(stream: &Stream) -> (Duration, usize) {
    // The rules are parsed (TOML, patterns compiled) once per process, not per event: outside
    // the timing, as the baseline has none.
    let rules = Rules::default_rules();
    let started = Instant::now();
    let mut graph = IdentityGraph::new(rules);
    let mut resolved = 0usize;
    for (event_id, identifiers) in &stream.events {
        if graph.observe(*event_id, identifiers).customer.is_some() {
            resolved += 1;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(resolved, stream.events.len(), "every event resolves");
    let customers = graph.customer_count();
    drop(std::hint::black_box(graph));
    (elapsed, customers)
}

/// Resolves the stream with union-find; returns the time and the sets made.
fn union_find_run(stream: &Stream) -> (Duration, usize) {
    let started = Instant::now();
    let mut index: HashMap<Identifier, u32> = HashMap::new();
    let mut sets = UnionFind::<u32>::new(stream.links);
    let mut roots: Vec<(EventId, u32)> = Vec::with_capacity(stream.events.len());
    for (event_id, identifiers) in &stream.events {
        let mut first = None;
        for identifier in identifiers {
            let at = match index.get(identifier) {
                Some(&at) => at,
                None => {
                    let next = index.len() as u32;
                    index.insert(identifier.clone(), next);
                    next
                }
            };
            match first {
                None => first = Some(at),
                Some(first) => {
                    sets.union(first, at);
                }
            }
        }
        let first = first.expect("events with identifiers only");
        roots.push((*event_id, sets.find_mut(first)));
    }
    let elapsed = started.elapsed();
    assert_eq!(roots.len(), stream.events.len());
    let distinct: std::collections::HashSet<u32> = (0..index.len() as u32)
        .map(|at| sets.find_mut(at))
        .collect();
    drop(std::hint::black_box(roots));
    (elapsed, distinct.len())
}

/// The stream's size: (events, population, rounds).
fn sizes() -> (usize, u32, usize) {
    if quick() {
        (100_000, 20_000, 3)
    } else {
        (1_000_000, 200_000, 5)
    }
}

/// One side's run, timed in a process of its own.
struct Run {
    elapsed: Duration,
    /// Customers (Kinfold) or sets (the baseline) made.
    made: usize,
    events: usize,
    links: usize,
}

/// One side's run in a process of its own: prints its time, what it made and the stream's
/// size.
fn run_side(side: &str) {
    let (events, customers, _) = sizes();
    let stream = stream(events, customers);
    let (elapsed, made) = match side {
        "kinfold" => kinfold_run(&stream),
        "baseline" => union_find_run(&stream),
        other => panic!("no side {other}"),
    };
    println!(
        "{} {} {} {}",
        elapsed.as_nanos(),
        made,
        stream.events.len(),
        stream.links
    );
}

/// Runs `side` in a fresh process.
fn in_own_process(side: &str) -> Run {
    let output = std::process::Command::new(std::env::current_exe().expect("this binary"))
        .args(["--side", side])
        .output()
        .expect("the bench runs itself");
    assert!(
        output.status.success(),
        "{side} run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8(output.stdout).expect("utf-8");
    let mut fields = line.split_whitespace();
    let mut next = || {
        fields
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .expect("a run prints its time, what it made and the stream's size")
    };
    Run {
        elapsed: Duration::from_nanos(next()),
        made: next() as usize,
        events: next() as usize,
        links: next() as usize,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--side") {
        run_side(&args[at + 1]);
        return;
    }
    let quick = quick();
    let (_, customers, reps) = sizes();
    let mut kinfold_runs = Vec::with_capacity(reps);
    let mut baseline_runs = Vec::with_capacity(reps);
    let mut made = (0, 0);
    let mut links = 0;
    for round in 0..reps {
        // Alternate which goes first, so drift hits both alike.
        let (kinfold, baseline) = if round % 2 == 0 {
            let kinfold = in_own_process("kinfold");
            (kinfold, in_own_process("baseline"))
        } else {
            let baseline = in_own_process("baseline");
            (in_own_process("kinfold"), baseline)
        };
        assert_eq!(
            (kinfold.events, kinfold.links),
            (baseline.events, baseline.links),
            "both sides resolve the same stream"
        );
        if round == 0 {
            println!(
                "identity resolve bench{}: {} events, {} link operations (identifiers), population {}",
                if quick { " (quick)" } else { "" },
                kinfold.events,
                kinfold.links,
                customers,
            );
        }
        links = kinfold.links;
        println!(
            "  round {}: kinfold {:.3} s, baseline {:.3} s, ratio {:.2}",
            round + 1,
            kinfold.elapsed.as_secs_f64(),
            baseline.elapsed.as_secs_f64(),
            baseline.elapsed.as_secs_f64() / kinfold.elapsed.as_secs_f64()
        );
        kinfold_runs.push(kinfold.elapsed);
        baseline_runs.push(baseline.elapsed);
        made = (kinfold.made, baseline.made);
    }
    let kinfold = median(&mut kinfold_runs);
    let baseline = median(&mut baseline_runs);
    let rate = |elapsed: Duration| links as f64 / elapsed.as_secs_f64();
    println!(
        "  kinfold graph (rules, changes, replay inputs): {:>12.0} links/s ({:.3} s, {} customers)",
        rate(kinfold),
        kinfold.as_secs_f64(),
        made.0
    );
    println!(
        "  petgraph UnionFind + HashMap (no rules):       {:>12.0} links/s ({:.3} s, {} sets)",
        rate(baseline),
        baseline.as_secs_f64(),
        made.1
    );
    println!(
        "  kinfold / baseline: {:.2} (goal >= 0.8; and >= 1M links/s)",
        rate(kinfold) / rate(baseline)
    );
}

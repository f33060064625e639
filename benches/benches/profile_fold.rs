//! Folding the Online Retail II data set into profiles: Kinfold's fold of every customer's
//! journal against DuckDB computing the same order facts with GROUP BY over the same rows, in
//! the same run.
//!
//! The data: `../shared/data/online_retail_II_2009-2010.csv.gz`, read with the mapping of
//! `kinfold import online-retail` (`kinfold_ingest::online_retail`). Its invoices with a
//! member card, canonicalised as ingest does, make each card's journal: the customers that
//! identity resolution makes of them (a card is its customer's only identifier here).
//!
//! - Kinfold: for every journal, `fold` (every event in event time into the stored state:
//!   order facts per channel and overall, stores, SKUs, identifiers) and `profile` (the view
//!   GetProfile serves: order facts, average order value, mean purchase interval, RFM, lifetime
//!   value, top SKUs), collected.
//! - DuckDB (`tests/python/online_retail_groupby_bench.py`): over an in-memory table of the same
//!   sale and return lines, per customer: distinct sale and return invoices, gross, returned
//!   and net spend, first and last purchase, average order value, mean purchase interval, and
//!   the top five SKUs by net units from a second GROUP BY; materialised as a table.
//!
//! Both start from memory (Kinfold from decoded events, DuckDB from its typed table); loading
//! is untimed on both sides. Both run on one thread, then on two (DuckDB with `SET threads`,
//! Kinfold's journals split between two threads). Both sides' totals (customers, orders,
//! returns, net spend, top SKUs' units) must agree or the bench fails. Median of seven rounds
//! (`KINFOLD_BENCH_QUICK=1`: three).

use kinfold_benches::online_retail::{FILE, RECEIVED as NOW, members};
use kinfold_benches::{median, quick};
use kinfold_profile::{Journal, Profile, ProfileRules, fold};
use std::time::{Duration, Instant};

/// What both sides must agree on.
#[derive(Debug, PartialEq, Eq)]
struct Totals {
    customers: u64,
    orders: u64,
    returns: u64,
    net_pence: i64,
    top_units: i64,
}

fn fold_all(journals: &[Journal], rules: &ProfileRules) -> Vec<Profile> {
    journals
        .iter()
        .map(|journal| fold(journal.events()).profile(rules, NOW))
        .collect()
}

/// Folds every journal on `threads` threads; returns the time and the profiles.
fn kinfold_run(
    journals: &[Journal],
    rules: &ProfileRules,
    threads: usize,
) -> (Duration, Vec<Profile>) {
    let started = Instant::now();
    let profiles = if threads == 1 {
        fold_all(journals, rules)
    } else {
        let chunk = journals.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = journals
                .chunks(chunk)
                .map(|part| scope.spawn(move || fold_all(part, rules)))
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().expect("a fold thread"))
                .collect()
        })
    };
    (started.elapsed(), profiles)
}

fn totals(profiles: &[Profile]) -> Totals {
    Totals {
        customers: profiles.len() as u64,
        orders: profiles.iter().map(|p| p.overall.orders).sum(),
        returns: profiles.iter().map(|p| p.overall.returns).sum(),
        net_pence: profiles
            .iter()
            .flat_map(|p| p.overall.money.values())
            .map(|spend| spend.net_minor())
            .sum(),
        top_units: profiles
            .iter()
            .filter_map(|p| p.top_skus.first())
            .map(|(_, bought)| bought.units)
            .sum(),
    }
}

fn main() {
    let quick = quick();
    let rounds = if quick { 3 } else { 7 };
    let started = Instant::now();
    let path = kinfold_tests::shared_data(FILE);
    let members = members(&path);
    let (journals, lines, events) = (&members.journals, members.lines, members.events());
    let rules = ProfileRules::default_rules();
    println!(
        "profile fold bench{}: Online Retail II 2009-2010, {} customers, {} invoices, {} lines; setup {:.1} s",
        if quick { " (quick)" } else { "" },
        journals.len(),
        events,
        lines,
        started.elapsed().as_secs_f64()
    );

    let duckdb = kinfold_tests::run_python_json(
        "online_retail_groupby_bench.py",
        &[
            path.to_str().expect("a UTF-8 path"),
            &rounds.to_string(),
            "1,2",
        ],
    )
    .expect("the DuckDB baseline runs");
    let number = |name: &str| {
        duckdb[name]
            .as_i64()
            .expect("a number in the baseline's answer")
    };
    let baseline_totals = Totals {
        customers: number("customers") as u64,
        orders: number("orders") as u64,
        returns: number("returns") as u64,
        net_pence: number("net_pence"),
        top_units: number("top_units"),
    };
    assert_eq!(
        number("rows") as usize,
        lines,
        "both sides read the same lines"
    );

    for threads in [1usize, 2] {
        let mut kinfold_runs = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let (elapsed, profiles) = kinfold_run(journals, &rules, threads);
            assert_eq!(
                totals(&profiles),
                baseline_totals,
                "Kinfold's profiles and DuckDB's aggregates agree"
            );
            kinfold_runs.push(elapsed);
        }
        let mut duckdb_runs: Vec<Duration> = duckdb["seconds"][threads.to_string()]
            .as_array()
            .expect("the baseline's rounds")
            .iter()
            .map(|s| Duration::from_secs_f64(s.as_f64().expect("seconds")))
            .collect();
        let show = |runs: &[Duration]| {
            runs.iter()
                .map(|run| format!("{:.0}", run.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "  {threads} thread(s): rounds (ms) kinfold [{}], duckdb [{}]",
            show(&kinfold_runs),
            show(&duckdb_runs)
        );
        let kinfold = median(&mut kinfold_runs);
        let baseline = median(&mut duckdb_runs);
        println!(
            "  {threads} thread(s): kinfold fold + profile {:>7.1} ms, duckdb GROUP BY {:>7.1} ms; kinfold / duckdb time: {:.2} (goal <= 1.5)",
            kinfold.as_secs_f64() * 1000.0,
            baseline.as_secs_f64() * 1000.0,
            kinfold.as_secs_f64() / baseline.as_secs_f64()
        );
    }
    println!(
        "  totals on both sides: {} customers, {} orders, {} returns, net {} pence",
        baseline_totals.customers,
        baseline_totals.orders,
        baseline_totals.returns,
        baseline_totals.net_pence
    );
}

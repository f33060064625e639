//! `kinfold`: the customer data platform for retail, as one binary.
//!
//! Subcommands: `serve` (every stage and the HTTP server on the configured storage), `demo`
//! (serve plus a synthetic shopper population), `publish` (send a file of events to a running
//! server), `import online-retail` (load the UCI Online Retail II data set as POS history),
//! `schemas check|compose`, `config print`, `dlq list|redrive`.

mod app;
mod cli;
mod commands;
mod config;
mod grpc;
mod http;
mod server;
mod telemetry;

use clap::Parser;

/// mimalloc: the stages allocate and free many small strings and buffers per event (decoded
/// records, journal rows), where glibc's allocator spent about a fifth of the server's time
/// merging and splitting chunks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

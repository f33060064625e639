//! Command-line interface.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kinfold",
    version,
    about = "customer data platform for retail: every channel's events, one customer"
)]
pub struct Cli {
    /// A TOML configuration file (see `kinfold config print` for every key).
    #[arg(long, global = true, env = "KINFOLD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Write logs as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Kinfold: ingest over HTTP into the event log, the schema registry, metrics.
    Serve(ServeArgs),
    /// Serve, and stream a synthetic population of shoppers through every channel.
    Demo(DemoArgs),
    /// Send a file of events (JSON lines, or an Avro container file) to a running server.
    Publish(PublishArgs),
    /// Import a data set into the event log.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Check or compose the Avro schemas.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// Show the effective configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Read the event log of a stopped embedded store (canonical events or dead letters) as
    /// JSON lines.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Inspect and redrive the dead-letter log of a running server.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Identity resolution: preview a rule change, then apply it.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Profiles of a stopped store.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// Print every customer's profile facts and journal (event ids) as one JSON object per
    /// line, for audits and tests.
    Dump {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Data directory of the embedded storage (same as --storage embedded://DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Storage URL: embedded://DIR (tables and, by default, the event log).
    #[arg(long, conflicts_with = "data_dir")]
    pub storage: Option<String>,
    /// Event log URL when the log lives elsewhere: kafka://HOST:PORT (needs the `kafka` feature).
    #[arg(long)]
    pub log: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Address of the HTTP server (port 0 picks a free port; the bound address is printed).
    #[arg(long)]
    pub http_addr: Option<String>,
    /// Address of the gRPC server (port 0 picks a free port; the bound address is printed).
    #[arg(long)]
    pub grpc_addr: Option<String>,
    /// Stages to run, comma-separated: ingest, identity, all, or none (HTTP only). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub stages: Option<Vec<String>>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Number of synthetic customers.
    #[arg(long, default_value_t = 1000)]
    pub customers: u32,
    /// Events per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Stop generating after this many events (the server keeps running).
    #[arg(long)]
    pub events: Option<u64>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishFormat {
    /// One JSON event per line.
    Jsonl,
    /// An Avro object container file of family records.
    Avro,
}

#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The file to send.
    pub file: PathBuf,
    /// The server's base URL (default: from the http.addr setting).
    #[arg(long)]
    pub server: Option<String>,
    /// The file's format (default: by extension, .avro is Avro, anything else JSON lines).
    #[arg(long, value_enum)]
    pub format: Option<PublishFormat>,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// The UCI Online Retail II CSV (plain or .gz): invoices become POS transactions, `C`
    /// invoices returns, customer ids member cards; rows without a customer are guest sales.
    OnlineRetail(ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The CSV file.
    pub file: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Write every row that could not be mapped (line number, reason, row) as JSON lines here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Check every schema version: valid Avro, BACKWARD_TRANSITIVE compatible, canonical
    /// schema in step with the family schemas. Exits non-zero on any problem.
    Check {
        /// A schemas directory to check instead of the compiled-in one (`schemas/avro`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the canonical schema composed from the current family schemas.
    Compose {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML.
    Print {
        #[command(flatten)]
        serve: ServeArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DlqWindowArgs {
    /// The server's base URL (default: from the http.addr setting).
    #[arg(long)]
    pub server: Option<String>,
    /// Dead-letter partition.
    #[arg(long, default_value_t = 0)]
    pub partition: u32,
    /// First offset.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Most dead letters.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters with their origin and reason.
    List(DlqWindowArgs),
    /// Submit dead letters again, after their cause was fixed.
    Redrive(DlqWindowArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTopic {
    Canonical,
    Dlq,
    /// `events.resolved`: each event with the customer it resolved to.
    Resolved,
    /// `identity.changes`.
    IdentityChanges,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print every record of a log as one JSON object per line.
    Dump {
        /// Which log.
        #[arg(long, value_enum, default_value = "canonical")]
        topic: LogTopic,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Re-resolve the identity graph's history under a proposed rule file and report which
    /// customers would split or merge, changing nothing.
    Preview {
        /// The proposed rule file (TOML, like `identity/rules.default.toml`).
        #[arg(long)]
        rules: PathBuf,
        /// The rule file in force (default: the compiled-in rules).
        #[arg(long)]
        current: Option<PathBuf>,
        /// Print the whole preview as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Apply a rule file on a running Kinfold: the whole history is re-resolved under it by
    /// replay (the change goes into the graph's input log, so later replays make it again), and
    /// every event that moved is reported.
    Reresolve {
        /// The new rule file (TOML, like `identity/rules.default.toml`).
        #[arg(long)]
        rules: PathBuf,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
        /// The gRPC address of the process running the identity stage.
        #[arg(long, default_value = "127.0.0.1:50051")]
        grpc: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

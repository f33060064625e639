//! Subcommand dispatch.

mod demo;
mod dlq;
mod identity;
mod import;
mod log;
mod profiles;
mod publish;
mod schemas;

use crate::cli::{
    Cli, Command, ConfigCommand, IdentityCommand, ImportSource, LogCommand, ProfilesCommand,
    ServeArgs, StorageArgs,
};
use crate::config::{AddrConfig, Config, FlagOverrides, LogJson, ServeConfig, StorageOverride};
use anyhow::Context;

fn storage_url(args: &StorageArgs) -> Option<String> {
    args.storage.clone().or_else(|| {
        args.data_dir
            .as_ref()
            .map(|dir| format!("embedded://{}", dir.display()))
    })
}

fn overrides(
    cli_json: bool,
    storage: Option<&StorageArgs>,
    serve: Option<&ServeArgs>,
) -> FlagOverrides {
    FlagOverrides {
        storage: storage.map(|args| StorageOverride {
            url: storage_url(args),
            log: args.log.clone(),
        }),
        http: serve
            .and_then(|s| s.http_addr.clone())
            .map(|addr| AddrConfig { addr }),
        grpc: serve
            .and_then(|s| s.grpc_addr.clone())
            .map(|addr| AddrConfig { addr }),
        log_json: cli_json.then_some(LogJson { json: true }),
        serve: serve
            .and_then(|s| s.stages.clone())
            .map(|stages| ServeConfig {
                stages: stages.into_iter().filter(|name| name != "none").collect(),
            }),
    }
}

fn load(
    cli: &Cli,
    storage: Option<&StorageArgs>,
    serve: Option<&ServeArgs>,
) -> anyhow::Result<Config> {
    let config = Config::load(
        cli.config.as_deref(),
        &overrides(cli.log_json, storage, serve),
    )
    .context("invalid configuration")?;
    crate::telemetry::init_logs(&config.log.level, config.log.json);
    Ok(config)
}

/// The base URL of the server named by `--server`, or by the configured HTTP address.
fn server_url(explicit: Option<&str>, config: &Config) -> String {
    explicit.map_or_else(
        || format!("http://{}", config.http.addr),
        |url| url.trim_end_matches('/').to_owned(),
    )
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => {
            let config = load(&cli, Some(&args.storage), Some(args))?;
            crate::server::serve(config).await
        }
        Command::Demo(args) => {
            let config = load(&cli, Some(&args.serve.storage), Some(&args.serve))?;
            demo::run(config, args).await
        }
        Command::Publish(args) => {
            let config = load(&cli, None, None)?;
            publish::run(&server_url(args.server.as_deref(), &config), args).await
        }
        Command::Import {
            source: ImportSource::OnlineRetail(args),
        } => {
            let config = load(&cli, Some(&args.storage), None)?;
            import::online_retail(config, args).await
        }
        Command::Schemas { command } => schemas::run(command),
        Command::Config {
            command: ConfigCommand::Print { serve },
        } => {
            let config = load(&cli, Some(&serve.storage), Some(serve))?;
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Log {
            command: LogCommand::Dump { topic, storage },
        } => {
            let config = load(&cli, Some(storage), None)?;
            log::dump(config, *topic).await
        }
        Command::Profiles {
            command: ProfilesCommand::Dump { storage },
        } => {
            let config = load(&cli, Some(storage), None)?;
            profiles::dump(config).await
        }
        Command::Dlq { command } => {
            let config = load(&cli, None, None)?;
            dlq::run(&config, command, |explicit| server_url(explicit, &config)).await
        }
        Command::Identity {
            command:
                IdentityCommand::Preview {
                    rules,
                    current,
                    json,
                    storage,
                },
        } => {
            let config = load(&cli, Some(storage), None)?;
            identity::preview(config, rules, current.as_deref(), *json).await
        }
        Command::Identity {
            command:
                IdentityCommand::Reresolve {
                    rules,
                    reason,
                    grpc,
                    json,
                },
        } => identity::reresolve(rules, reason, grpc, *json).await,
    }
}

//! `kinfold dlq list|redrive` against a running server.

use crate::cli::DlqCommand;
use crate::config::Config;
use anyhow::{Context, bail};
use serde_json::Value;

pub async fn run(
    _config: &Config,
    command: &DlqCommand,
    server: impl Fn(Option<&str>) -> String,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let (args, response) = match command {
        DlqCommand::List(args) => {
            let url = format!(
                "{}/v1/dlq?partition={}&from={}&limit={}",
                server(args.server.as_deref()),
                args.partition,
                args.from,
                args.limit
            );
            (args, client.get(url).send().await)
        }
        DlqCommand::Redrive(args) => {
            let url = format!("{}/v1/dlq/redrive", server(args.server.as_deref()));
            let body = serde_json::json!({"partition": args.partition, "from": args.from, "limit": args.limit});
            (args, client.post(url).json(&body).send().await)
        }
    };
    let response =
        response.context("cannot reach the kinfold server (is `kinfold serve` running?)")?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .context("the server's answer is not json")?;
    if !status.is_success() {
        bail!("server answered {status}: {body}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    match command {
        DlqCommand::List(_) => {
            let letters = body["dead_letters"].as_array().cloned().unwrap_or_default();
            for letter in &letters {
                println!(
                    "{:>8}  {:<18} {:<8} {}{}",
                    letter["offset"],
                    letter["reason_code"].as_str().unwrap_or_default(),
                    letter["channel"].as_str().unwrap_or_default(),
                    letter["reason"].as_str().unwrap_or_default(),
                    letter["line"]
                        .as_i64()
                        .map(|line| format!(" (line {line})"))
                        .unwrap_or_default(),
                );
            }
            println!(
                "{} dead letters; next offset {}",
                letters.len(),
                body["next"]
            );
        }
        DlqCommand::Redrive(_) => {
            let redriven = body["redriven"].as_array().cloned().unwrap_or_default();
            let accepted = redriven
                .iter()
                .filter(|item| item["result"]["status"] == "accepted")
                .count();
            let skipped = body["skipped"].as_array().map_or(0, Vec::len);
            println!(
                "redrove {} dead letters: {accepted} now accepted, {} still rejected or duplicate; {skipped} skipped; next offset {}",
                redriven.len(),
                redriven.len() - accepted,
                body["next"]
            );
        }
    }
    Ok(())
}

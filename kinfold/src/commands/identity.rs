//! `kinfold identity preview`: what re-resolving the canonical log's history under a proposed
//! rule file would change, without changing anything; `kinfold identity reresolve`: apply it on
//! a running Kinfold, through its gRPC API.
//!
//! The history is the identity graph's own input log, `identity.inputs`: every event in the
//! order the graph resolved it, and every decision by hand (merges, splits, erasures, review
//! decisions, earlier rule changes). The graph now is its replay; the graph after is the replay
//! with the proposed rules appended as a rule change, exactly what `reresolve` would apply.
//! Before the identity stage has run there is no such log, and the history is the canonical
//! log in receive-time order (then event time, then event id, the same on every run).

use crate::app::App;
use crate::config::Config;
use anyhow::Context;
use kinfold_core::{EventId, Identifier};
use kinfold_identity::model::{IdentityGraph, Input, Rules, compare, preview as preview_rules};
use kinfold_identity::records::InputRecord;
use kinfold_identity::stage::IdentityTopics;
use kinfold_schemas::codec::decode_framed_canonical;
use std::path::Path;

const CHUNK: usize = 5_000;

fn rules_from(path: &Path) -> anyhow::Result<Rules> {
    read_rules(path).map(|(_, rules)| rules)
}

/// A rule file's text, and the rules it makes.
fn read_rules(path: &Path) -> anyhow::Result<(String, Rules)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the rule file {}", path.display()))?;
    let rules = Rules::from_toml(&text)
        .with_context(|| format!("{} is not a valid rule file", path.display()))?;
    Ok((text, rules))
}

pub async fn preview(
    config: Config,
    proposed: &Path,
    current: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let proposed = rules_from(proposed)?;
    let current = match current {
        Some(path) => rules_from(path)?,
        None => Rules::default_rules(),
    };
    let app = App::open(config).await?;
    let preview = match graph_inputs(&app).await? {
        Some(inputs) => {
            let events = inputs
                .iter()
                .filter(|input| matches!(input, Input::Observe { .. }))
                .count() as u64;
            let now = IdentityGraph::replay(current, &inputs);
            let mut changed = inputs;
            changed.push(Input::Rules {
                rules: Box::new(proposed.file().clone()),
                reason: "preview".to_owned(),
            });
            let after = IdentityGraph::replay(proposed, &changed);
            compare(&now, &after, events)
        }
        None => canonical_preview(&app, &current, &proposed).await?,
    };
    print_preview(&preview, json)
}

/// The graph's inputs as `identity.inputs` holds them, or `None` when it holds nothing.
async fn graph_inputs(app: &App) -> anyhow::Result<Option<Vec<Input>>> {
    let topic = IdentityTopics::default().inputs;
    let log = &app.backends.log;
    if log.partitions(&topic).await.is_err() {
        return Ok(None);
    }
    let mut inputs = Vec::new();
    let mut next = 0;
    loop {
        let records = log.read(&topic, 0, next, CHUNK).await?;
        let Some(last) = records.last() else {
            break;
        };
        next = last.offset + 1;
        for record in &records {
            let at = || format!("{topic}/0@{}", record.offset);
            match InputRecord::decode(&record.value).with_context(at)? {
                InputRecord::Event(frame) => {
                    let event = decode_framed_canonical(&frame, &app.registry).with_context(at)?;
                    inputs.push(Input::Observe {
                        event_id: event.event_id,
                        identifiers: event.identifiers.into_iter().map(Into::into).collect(),
                    });
                }
                InputRecord::Decision(decision) => inputs.push(decision),
            }
        }
    }
    Ok((!inputs.is_empty()).then_some(inputs))
}

/// The preview over the canonical log, before the identity stage has run.
async fn canonical_preview(
    app: &App,
    current: &Rules,
    proposed: &Rules,
) -> anyhow::Result<kinfold_identity::model::RulePreview> {
    let topic = app.config.topics.canonical.clone();
    let log = &app.backends.log;
    let mut history: Vec<((i64, i64, EventId), Vec<Identifier>)> = Vec::new();
    for partition in 0..log.partitions(&topic).await? {
        let mut next = 0;
        loop {
            let records = log.read(&topic, partition, next, CHUNK).await?;
            let Some(last) = records.last() else {
                break;
            };
            next = last.offset + 1;
            for record in &records {
                let event =
                    decode_framed_canonical(&record.value, &app.registry).with_context(|| {
                        format!("{topic}/{partition}@{} does not decode", record.offset)
                    })?;
                history.push((
                    (event.receive_time, event.event_time, event.event_id),
                    event.identifiers,
                ));
            }
        }
    }
    history.sort_by_key(|(order, _)| *order);
    Ok(preview_rules(
        current,
        proposed,
        history
            .iter()
            .map(|((_, _, event_id), identifiers)| (*event_id, identifiers.as_slice())),
    ))
}

fn print_preview(preview: &kinfold_identity::model::RulePreview, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(preview)?);
        return Ok(());
    }
    println!(
        "{} events re-resolved: {} customers now, {} under the proposed rules",
        preview.events, preview.customers_now, preview.customers_after
    );
    println!(
        "{} customers would split, {} customers would come from merges",
        preview.splits.len(),
        preview.merges.len()
    );
    println!(
        "identifiers: {} no longer held, {} newly held; review queue: {} now, {} after",
        preview.identifiers_dropped,
        preview.identifiers_added,
        preview.review_now,
        preview.review_after
    );
    for split in preview.splits.iter().take(20) {
        let groups: Vec<String> = split
            .groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        println!("split {}: {}", split.customer, groups.join(" | "));
    }
    for merge in preview.merges.iter().take(20) {
        println!(
            "merge into {}: {} customers",
            merge.customer,
            merge.groups.len()
        );
    }
    Ok(())
}

pub async fn reresolve(rules: &Path, reason: &str, grpc: &str, json: bool) -> anyhow::Result<()> {
    use kinfold_proto::v1::ReResolveRequest;
    use kinfold_proto::v1::change::Change as Kind;
    use kinfold_proto::v1::identity_service_client::IdentityServiceClient;
    // Checked here too, for a clear message before anything is sent.
    let (rules_toml, _) = read_rules(rules)?;
    let address = if grpc.contains("://") {
        grpc.to_owned()
    } else {
        format!("http://{grpc}")
    };
    let mut client = IdentityServiceClient::connect(address.clone())
        .await
        .with_context(|| format!("cannot reach kinfold's gRPC API at {address}"))?
        .max_decoding_message_size(crate::grpc::MAX_RESPONSE_BYTES);
    let answer = client
        .re_resolve(ReResolveRequest {
            rules_toml,
            reason: reason.to_owned(),
        })
        .await
        .map_err(|status| anyhow::anyhow!("re-resolving refused: {}", status.message()))?
        .into_inner();
    let moved: Vec<_> = answer
        .changes
        .iter()
        .filter_map(|change| match &change.change {
            Some(Kind::Moved(moved)) => Some(moved),
            _ => None,
        })
        .collect();
    if json {
        let moved: Vec<_> = moved
            .iter()
            .map(|moved| {
                serde_json::json!({
                    "event_id": moved.event_id,
                    "from": moved.from_customer_id,
                    "to": moved.to_customer_id,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "customers_before": answer.customers_before,
                "customers_after": answer.customers_after,
                "moved": moved,
            }))?
        );
        return Ok(());
    }
    println!(
        "rules applied: {} customers before, {} after; {} events moved",
        answer.customers_before,
        answer.customers_after,
        moved.len()
    );
    Ok(())
}

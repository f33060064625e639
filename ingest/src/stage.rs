//! The ingest stage loop over source topics: read records from the log, turn each into a
//! canonical event or a dead letter, write them durably, and only then move the group's
//! position past them.
//!
//! This first form owns every partition of its topics (one process per group); the group
//! assignment and rebalancing of Kafka consumer groups build on the same steps. Positions
//! only cover offsets whose effect is durable and contiguous ([`PartitionPositions`]), so a
//! crash anywhere replays at most what was not yet committed, and the writer's duplicate
//! index makes a replay harmless.

use crate::intake::{Intake, Origin};
use crate::writer::{IngestOutcome, IngestWriter, WriterError};
use kinfold_core::ports::{EventLog, LogError, TopicPartition};
use kinfold_core::positions::PartitionPositions;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How the stage reads.
#[derive(Debug, Clone)]
pub struct StageConfig {
    /// The consumer group whose positions the stage keeps.
    pub group: String,
    /// Source topics: Avro in the Confluent wire format.
    pub topics: Vec<String>,
    /// Most records read from one partition at a time.
    pub batch: usize,
    /// Pause when every partition is caught up.
    pub idle: Duration,
}

/// What a stage run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageReport {
    pub records: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

/// Why the stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("ingest writer: {0}")]
    Writer(#[from] WriterError),
}

/// Runs the ingest stage until `shutdown` turns true; then finishes the batch in hand,
/// commits, and returns.
pub async fn run_ingest_stage(
    log: Arc<dyn EventLog>,
    intake: Intake,
    writer: IngestWriter,
    config: StageConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<StageReport, StageError> {
    let mut positions = PartitionPositions::default();
    let mut next_reads = Vec::new();
    for topic in &config.topics {
        for partition in 0..log.partitions(topic).await? {
            let start = log
                .committed(&config.group, topic, partition)
                .await?
                .unwrap_or(0);
            let owned = TopicPartition {
                topic: topic.clone(),
                partition,
            };
            positions.assign(owned.clone(), start);
            next_reads.push((owned, start));
        }
    }
    let mut report = StageReport::default();
    while !*shutdown.borrow() {
        let mut read_any = false;
        for (owned, next) in &mut next_reads {
            let records = log
                .read(&owned.topic, owned.partition, *next, config.batch)
                .await?;
            let Some(last) = records.last() else {
                continue;
            };
            read_any = true;
            *next = last.offset + 1;
            let submissions = records
                .iter()
                .map(|record| {
                    let origin = Origin {
                        channel: "kafka".to_owned(),
                        label: format!(
                            "kafka:{}/{}@{}",
                            owned.topic, owned.partition, record.offset
                        ),
                        content_type: Some("application/vnd.confluent.avro".to_owned()),
                        source_topic: Some(owned.topic.clone()),
                        source_partition: i32::try_from(owned.partition).ok(),
                        source_offset: i64::try_from(record.offset).ok(),
                        line: None,
                    };
                    intake.avro(&record.value, &origin)
                })
                .collect();
            // Durable in the canonical or dead-letter log before the position moves.
            let outcomes = writer.submit(submissions).await?;
            for (record, outcome) in records.iter().zip(&outcomes) {
                positions.mark_done(owned, record.offset);
                report.records += 1;
                match outcome {
                    IngestOutcome::Accepted { .. } => report.accepted += 1,
                    IngestOutcome::Duplicate { .. } => report.duplicates += 1,
                    IngestOutcome::Rejected { .. } => report.rejected += 1,
                }
            }
            for (partition, position) in positions.committable() {
                if partition == *owned {
                    log.commit(
                        &config.group,
                        &partition.topic,
                        partition.partition,
                        position,
                    )
                    .await?;
                }
            }
        }
        if !read_any {
            tokio::select! {
                _ = tokio::time::sleep(config.idle) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    Ok(report)
}

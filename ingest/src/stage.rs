//! The ingest stage: source topics (Avro in the Confluent wire format) → canonical events and
//! dead letters, on the shared stage loop ([`kinfold_core::stage`]).
//!
//! A batch is done when every record of it is durable in the canonical or the dead-letter log
//! (the writer returns only then), so the loop commits a source offset only after its event or
//! its dead letter. A replay after a crash is harmless: the writer's duplicate index and the
//! deterministic event ids make the same record give the same event once.

use crate::intake::{Intake, Origin};
use crate::writer::{IngestOutcome, IngestWriter, WriterError};
use kinfold_core::ports::{EventLog, GroupOptions, LogRecord, TopicPartition};
use kinfold_core::stage::{
    Processor, StageConfig, StageError, StageReport, StageStatus, run_stage,
};
use std::ops::AddAssign;
use std::sync::Arc;
use tokio::sync::watch;

/// What became of the records the stage processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestTally {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

impl AddAssign for IngestTally {
    fn add_assign(&mut self, other: Self) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }
}

/// Turns source records into submissions for the writer.
#[derive(Debug, Clone)]
pub struct IngestProcessor {
    intake: Intake,
    writer: IngestWriter,
}

impl IngestProcessor {
    pub fn new(intake: Intake, writer: IngestWriter) -> Self {
        Self { intake, writer }
    }
}

/// Where a source record came from, as its dead letter will say.
fn origin(partition: &TopicPartition, record: &LogRecord) -> Origin {
    Origin {
        channel: "kafka".to_owned(),
        label: format!(
            "kafka:{}/{}@{}",
            partition.topic, partition.partition, record.offset
        ),
        content_type: Some("application/vnd.confluent.avro".to_owned()),
        source_topic: Some(partition.topic.clone()),
        source_partition: i32::try_from(partition.partition).ok(),
        source_offset: i64::try_from(record.offset).ok(),
        line: None,
    }
}

impl Processor for IngestProcessor {
    type Tally = IngestTally;
    type Error = WriterError;

    async fn process(
        &self,
        partition: &TopicPartition,
        records: &[LogRecord],
    ) -> Result<IngestTally, WriterError> {
        self.intake
            .resolve_schemas(records.iter().map(|record| &record.value[..]))
            .await?;
        let submissions = records
            .iter()
            .map(|record| self.intake.avro(&record.value, &origin(partition, record)))
            .collect();
        let outcomes = self.writer.submit(submissions).await?;
        let mut tally = IngestTally::default();
        for outcome in outcomes {
            match outcome {
                IngestOutcome::Accepted { .. } => tally.accepted += 1,
                IngestOutcome::Duplicate { .. } => tally.duplicates += 1,
                IngestOutcome::Rejected { .. } => tally.rejected += 1,
            }
        }
        Ok(tally)
    }
}

/// Runs the ingest stage over `options.topics` until `shutdown` turns true.
pub async fn run_ingest_stage(
    log: Arc<dyn EventLog>,
    processor: IngestProcessor,
    options: GroupOptions,
    config: StageConfig,
    status: Arc<StageStatus>,
    shutdown: watch::Receiver<bool>,
) -> Result<StageReport<IngestTally>, StageError> {
    run_stage(log, Arc::new(processor), options, config, status, shutdown).await
}

//! The Kafka backend of the event log (feature `kafka`), on rdkafka.
//!
//! - Appends go through an idempotent producer with `acks=all`; `append` returns once every
//!   record is acknowledged by the in-sync replicas. Partitions are chosen with Kafka's Java
//!   murmur2 partitioner (librdkafka's default is CRC32), so a key lands where the embedded log
//!   and Java producers put it.
//! - Topics are created explicitly with their partition count; never auto-created.
//! - Reads use one assign-only consumer (no group), positioned per call.
//! - Group positions are committed and read with a consumer per group that never subscribes,
//!   so committing a position never joins or disturbs the group's members.
//! - Stages join consumer groups through [`group::KafkaMember`].
//! - Any librdkafka property can be given in the URL's query:
//!   `kafka://HOST:PORT?session.timeout.ms=6000&partition.assignment.strategy=cooperative-sticky`.

use bytes::Bytes;
use kinfold_core::partitioner::partition_for_key;
use kinfold_core::ports::log::{check_offset, check_partition, is_valid_topic_name};
use kinfold_core::ports::{
    EventLog, GroupMember, GroupOptions, LogError, LogRecord, OutgoingRecord, PendingAppend,
    RecordPosition, TopicSpec,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod group;
pub use group::KafkaMember;

const TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

fn kafka_error(error: impl std::fmt::Display) -> LogError {
    LogError::Storage(format!("kafka: {error}"))
}

/// A consumed message as the log port's record.
fn log_record<M: Message>(message: &M) -> LogRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    (
                        header.key.to_owned(),
                        Bytes::copy_from_slice(header.value.unwrap_or_default()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    LogRecord {
        partition: message.partition() as u32,
        offset: message.offset() as u64,
        key: message.key().map(Bytes::copy_from_slice),
        value: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        headers,
        timestamp_millis: message.timestamp().to_millis().unwrap_or_default(),
    }
}

/// The event log on a Kafka cluster.
#[derive(Clone)]
pub struct KafkaLog {
    bootstrap: String,
    properties: Vec<(String, String)>,
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
    reader: Arc<Mutex<BaseConsumer>>,
    group_clients: Arc<Mutex<HashMap<String, Arc<BaseConsumer>>>>,
    partition_counts: Arc<Mutex<HashMap<String, u32>>>,
    /// Held while an append queues its records (see `start_append`).
    queueing: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

/// Which kind of librdkafka client a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Producer,
    Consumer,
    /// The admin client, which takes neither consumer nor producer properties.
    Admin,
}

/// The client kind a librdkafka property is only for (librdkafka's CONFIGURATION.md marks
/// these `C` or `P`); `None` for the properties every client takes. A URL's properties then
/// go only to the clients they are for, instead of each client warning that it ignores the
/// others' (`CONFWARN`).
fn only_for(key: &str) -> Option<Client> {
    const CONSUMER: &[&str] = &[
        "partition.assignment.strategy",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "coordinator.query.interval.ms",
        "max.poll.interval.ms",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "enable.auto.offset.store",
        "max.partition.fetch.bytes",
        "offset.store.method",
        "isolation.level",
        "enable.partition.eof",
        "check.crcs",
        "auto.offset.reset",
        "consume.callback.max.messages",
    ];
    const PRODUCER: &[&str] = &[
        "enable.idempotence",
        "enable.gapless.guarantee",
        "linger.ms",
        "message.send.max.retries",
        "retries",
        "sticky.partitioning.linger.ms",
        "request.required.acks",
        "acks",
        "request.timeout.ms",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "partitioner",
        "delivery.report.only.error",
    ];
    const CONSUMER_PREFIXES: &[&str] = &["group.", "fetch.", "queued."];
    const PRODUCER_PREFIXES: &[&str] =
        &["queue.buffering.", "transaction", "compression.", "batch."];
    if CONSUMER.contains(&key) || CONSUMER_PREFIXES.iter().any(|p| key.starts_with(p)) {
        Some(Client::Consumer)
    } else if PRODUCER.contains(&key) || PRODUCER_PREFIXES.iter().any(|p| key.starts_with(p)) {
        Some(Client::Producer)
    } else {
        None
    }
}

fn base_config(bootstrap: &str, properties: &[(String, String)], client: Client) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("log_level", "4");
    for (key, value) in properties {
        if only_for(key).is_none_or(|only| only == client) {
            config.set(key, value);
        }
    }
    config
}

fn consumer(
    bootstrap: &str,
    properties: &[(String, String)],
    group: &str,
) -> Result<BaseConsumer, LogError> {
    base_config(bootstrap, properties, Client::Consumer)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(kafka_error)
}

impl KafkaLog {
    /// Connects to the cluster at `address`: `host:port[,host:port][?property=value&...]`,
    /// the part of a `kafka://` URL after the scheme.
    pub fn connect(address: &str) -> Result<Self, LogError> {
        let (bootstrap, query) = address.split_once('?').unwrap_or((address, ""));
        let mut properties = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(LogError::Storage(format!(
                    "kafka: `{pair}` in the url is not a property=value pair"
                )));
            };
            properties.push((key.to_owned(), value.to_owned()));
        }
        let producer: FutureProducer = base_config(bootstrap, &properties, Client::Producer)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(kafka_error)?;
        let admin: AdminClient<DefaultClientContext> =
            base_config(bootstrap, &properties, Client::Admin)
                .create()
                .map_err(kafka_error)?;
        let reader = consumer(bootstrap, &properties, "kinfold-log-reader")?;
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            properties,
            producer,
            admin: Arc::new(admin),
            reader: Arc::new(Mutex::new(reader)),
            group_clients: Arc::default(),
            partition_counts: Arc::default(),
            queueing: Arc::default(),
        })
    }

    fn group_client(&self, group: &str) -> Result<Arc<BaseConsumer>, LogError> {
        let mut clients = self
            .group_clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(group) {
            return Ok(client.clone());
        }
        let client = Arc::new(consumer(&self.bootstrap, &self.properties, group)?);
        clients.insert(group.to_owned(), client.clone());
        Ok(client)
    }

    /// The partition count from the cluster's metadata, `None` when the topic does not exist.
    async fn metadata_partitions(&self, topic: &str) -> Result<Option<u32>, LogError> {
        let producer = self.producer.clone();
        let name = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&name), TIMEOUT)
                .map_err(kafka_error)?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == name) else {
                return Ok(None);
            };
            match found.error() {
                None => Ok(Some(found.partitions().len() as u32)),
                Some(code)
                    if RDKafkaErrorCode::from(code)
                        == RDKafkaErrorCode::UnknownTopicOrPartition =>
                {
                    Ok(None)
                }
                Some(code) => Err(kafka_error(RDKafkaErrorCode::from(code))),
            }
        })
        .await
        .map_err(kafka_error)?
    }

    async fn topic_partitions(&self, topic: &str) -> Result<u32, LogError> {
        if let Some(count) = self
            .partition_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
        {
            return Ok(*count);
        }
        let count = self
            .metadata_partitions(topic)
            .await?
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
        self.partition_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned(), count);
        Ok(count)
    }
}

#[async_trait::async_trait]
impl EventLog for KafkaLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<TopicSpec, LogError> {
        if !is_valid_topic_name(topic) {
            return Err(LogError::InvalidTopicName(topic.to_owned()));
        }
        let existing = match self.metadata_partitions(topic).await? {
            Some(existing) => existing,
            None => {
                let new_topic = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1));
                let results = self
                    .admin
                    .create_topics(
                        [&new_topic],
                        &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
                    )
                    .await
                    .map_err(kafka_error)?;
                for result in results {
                    match result {
                        Ok(_) => {}
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => {
                            return Err(kafka_error(format!("cannot create {name}: {code}")));
                        }
                    }
                }
                // Metadata may lag creation by a moment.
                let deadline = Instant::now() + TIMEOUT;
                loop {
                    if let Some(created) = self.metadata_partitions(topic).await? {
                        break created;
                    }
                    if Instant::now() > deadline {
                        return Err(kafka_error(format!(
                            "topic {topic} created but not visible"
                        )));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        if existing != partitions {
            return Err(LogError::PartitionCountMismatch {
                topic: topic.to_owned(),
                existing,
                requested: partitions,
            });
        }
        self.partition_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned(), partitions);
        Ok(TopicSpec {
            name: topic.to_owned(),
            partitions,
        })
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.topic_partitions(topic).await
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError> {
        self.start_append(topic, records).await?.await
    }

    async fn start_append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<PendingAppend, LogError> {
        let partitions = self.topic_partitions(topic).await?;
        // One append queues at a time, so appends started one after the other keep their
        // order in each partition even when the local queue is full and one has to wait.
        let _queueing = self.queueing.lock().await;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let partition = match record.partition {
                Some(partition) => {
                    check_partition(topic, partitions, partition)?;
                    partition
                }
                None => record
                    .key
                    .as_ref()
                    .map_or(0, |key| partition_for_key(key, partitions)),
            };
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_ref()),
                });
            }
            let mut future_record = FutureRecord::to(topic)
                .payload(record.value.as_ref())
                .partition(partition as i32)
                .timestamp(record.timestamp_millis)
                .headers(headers);
            if let Some(key) = &record.key {
                future_record = future_record.key(key.as_ref());
            }
            // Enqueue in order (the idempotent producer keeps per-partition order); wait for
            // room when the local queue is full.
            loop {
                match self.producer.send_result(future_record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        future_record = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return Err(kafka_error(error)),
                }
            }
        }
        Ok(Box::pin(async move {
            let mut positions = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                let delivered = delivery
                    .await
                    .map_err(|_| LogError::Closed)?
                    .map_err(|(error, _)| kafka_error(error))?;
                positions.push(RecordPosition {
                    partition: delivered.partition as u32,
                    offset: delivered.offset as u64,
                });
            }
            Ok(positions)
        }))
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        max_records: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        let partitions = self.topic_partitions(topic).await?;
        check_partition(topic, partitions, partition)?;
        let (_, high) = self.watermarks(topic, partition).await?;
        check_offset(topic, partition, from_offset, high)?;
        let wanted = (high - from_offset).min(max_records as u64) as usize;
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let reader = self.reader.clone();
        let name = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer = reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut assignment = TopicPartitionList::new();
            assignment
                .add_partition_offset(&name, partition as i32, Offset::Offset(from_offset as i64))
                .map_err(kafka_error)?;
            consumer.assign(&assignment).map_err(kafka_error)?;
            let mut records = Vec::with_capacity(wanted);
            let deadline = Instant::now() + TIMEOUT;
            while records.len() < wanted {
                if Instant::now() > deadline {
                    return Err(kafka_error(format!(
                        "timed out reading {name}/{partition} at {from_offset}"
                    )));
                }
                let Some(message) = consumer.poll(POLL) else {
                    continue;
                };
                let message = message.map_err(kafka_error)?;
                let offset = message.offset() as u64;
                if message.topic() != name
                    || message.partition() as u32 != partition
                    || offset < from_offset
                {
                    continue;
                }
                records.push(log_record(&message));
            }
            consumer.unassign().map_err(kafka_error)?;
            Ok(records)
        })
        .await
        .map_err(kafka_error)?
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        let partitions = self.topic_partitions(topic).await?;
        check_partition(topic, partitions, partition)?;
        let reader = self.reader.clone();
        let name = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer = reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (low, high) = consumer
                .fetch_watermarks(&name, partition as i32, TIMEOUT)
                .map_err(kafka_error)?;
            Ok((low.max(0) as u64, high.max(0) as u64))
        })
        .await
        .map_err(kafka_error)?
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), LogError> {
        let (_, high) = self.watermarks(topic, partition).await?;
        check_offset(topic, partition, next_offset, high)?;
        let client = self.group_client(group)?;
        let name = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(&name, partition as i32, Offset::Offset(next_offset as i64))
                .map_err(kafka_error)?;
            client
                .commit(&offsets, CommitMode::Sync)
                .map_err(kafka_error)
        })
        .await
        .map_err(kafka_error)?
    }

    async fn join_group(
        &self,
        options: &GroupOptions,
    ) -> Result<Option<Box<dyn GroupMember>>, LogError> {
        for topic in &options.topics {
            self.topic_partitions(topic).await?;
        }
        let member = KafkaMember::join(
            base_config(&self.bootstrap, &self.properties, Client::Consumer),
            options.clone(),
        )?;
        Ok(Some(Box::new(member)))
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        let partitions = self.topic_partitions(topic).await?;
        check_partition(topic, partitions, partition)?;
        let client = self.group_client(group)?;
        let name = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut wanted = TopicPartitionList::new();
            wanted.add_partition(&name, partition as i32);
            let found = client
                .committed_offsets(wanted, TIMEOUT)
                .map_err(kafka_error)?;
            let offset = found
                .find_partition(&name, partition as i32)
                .map(|element| element.offset());
            Ok(match offset {
                Some(Offset::Offset(offset)) if offset >= 0 => Some(offset as u64),
                _ => None,
            })
        })
        .await
        .map_err(kafka_error)?
    }
}

#[cfg(test)]
mod tests {
    use super::{Client, only_for};

    #[test]
    fn url_properties_go_to_the_clients_they_are_for() {
        for key in [
            "session.timeout.ms",
            "heartbeat.interval.ms",
            "group.instance.id",
            "fetch.min.bytes",
            "partition.assignment.strategy",
        ] {
            assert_eq!(only_for(key), Some(Client::Consumer), "{key}");
        }
        for key in [
            "linger.ms",
            "compression.type",
            "queue.buffering.max.messages",
            "batch.size",
        ] {
            assert_eq!(only_for(key), Some(Client::Producer), "{key}");
        }
        for key in [
            "debug",
            "security.protocol",
            "sasl.mechanisms",
            "client.rack",
        ] {
            assert_eq!(only_for(key), None, "{key}");
        }
    }
}

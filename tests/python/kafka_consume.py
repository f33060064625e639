"""Reads a Kinfold topic from a Kafka-protocol broker with Confluent's Python consumer and
decodes every record with Confluent's AvroDeserializer through Kinfold's /registry.

Usage: kafka_consume.py BOOTSTRAP REGISTRY_URL TOPIC EXPECTED_COUNT [TIMEOUT_SECS]
Prints JSON: the decoded records' event ids (or dead-letter ids), types (or reason codes), and
where they came from (a canonical event's origin; a dead letter's source topic, partition and
offset); a marker of events.resolved (JSON, where a frame starts with the magic byte 0) as itself.
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry_url, topic, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"python-check-{uuid.uuid4()}",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
metadata = consumer.list_topics(topic, timeout=10)
partitions = list(metadata.topics[topic].partitions)
consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
records = []
deadline = time.time() + (float(sys.argv[5]) if len(sys.argv) > 5 else 60)
while len(records) < expected and time.time() < deadline:
    message = consumer.poll(0.5)
    if message is None or message.error():
        continue
    if message.value()[:1] == b"{":
        # A customer's marker in events.resolved (absorbed, event moved away, erased) as JSON.
        marker = json.loads(message.value())
        records.append({"marker": marker, "key": message.key().decode()})
        continue
    value = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
    records.append({
        "id": value.get("event_id") or value.get("dead_letter_id"),
        "key": message.key().decode(),
        "type": value.get("event_type") or value.get("reason_code"),
        "origin": value.get("origin"),
        "source": [value.get("source_topic"), value.get("source_partition"), value.get("source_offset")],
    })
consumer.close()
print(json.dumps({"partitions": len(partitions), "records": records}))

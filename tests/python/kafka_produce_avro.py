"""Produces retail events to Kinfold's source topics the way a POS or e-commerce system would:
Confluent's Python producer, values serialised by Confluent's AvroSerializer with schema ids from
a Confluent-compatible registry (Kinfold's /registry), records keyed as the topics' contract says.

A share of the records is poison, as broken producers write it: truncated datums, an unknown
schema id, a bad magic byte, a writer schema that is not one of Kinfold's (registered under a
subject of its own), and over-long fields.

Usage: kafka_produce_avro.py BOOTSTRAP REGISTRY_URL GOLDEN_DIR COUNT POISON_PER_MILLE OUT_JSON [RATE]
Writes OUT_JSON.ready once every record is serialised (the registry is no longer needed), then
produces them all (at most RATE records a second, if given) and writes OUT_JSON: one entry per
record with its topic, partition, offset, what it is ("valid" or the poison kind) and, for a valid
one, its shopper ("person") and what it adds to their order facts ("money": SALE, RETURN or ORDER,
with "amount_minor").
"""
import copy
import json
import random
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry_url, golden_dir, count, poison_per_mille, out = sys.argv[1:7]
rate = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
count, poison_per_mille = int(count), int(poison_per_mille)
rng = random.Random(20261122)
registry = SchemaRegistryClient({"url": registry_url})

FAMILIES = {
    "pos.transactions": "pos.transactions-value/v2.json",
    "ecom.orders": "ecom.orders-value/v1.json",
    "wechat.events": "wechat.events-value/v1.json",
}
templates = {topic: json.load(open(f"{golden_dir}/{path}")) for topic, path in FAMILIES.items()}


def serializer(subject):
    schema = registry.get_latest_version(subject).schema
    return AvroSerializer(registry, schema.schema_str,
                          conf={"auto.register.schemas": False, "use.latest.version": True})


serializers = {topic: serializer(f"{topic}-value") for topic in FAMILIES}

# A writer schema Kinfold cannot read as any of its families, under a subject of its own.
foreign_schema = json.dumps({
    "type": "record", "name": "LegacyTill", "namespace": "com.example.legacy",
    "fields": [{"name": "till", "type": "string"}, {"name": "amount", "type": "double"}],
})
foreign_id = registry.register_schema("legacy.till-value", Schema(foreign_schema, "AVRO"))
foreign = AvroSerializer(registry, foreign_schema, conf={
    "auto.register.schemas": False,
    "subject.name.strategy": lambda ctx, record_name: "legacy.till-value",
})


# The shoppers: each serial belongs to one of them, and every shopper shops on every topic
# (consecutive serials cycle through the topics). A shopper's member card and phone (POS), shop
# buyer id, phone, openid and unionid (orders) and openid and unionid (WeChat) are their own, so
# identity resolution must make exactly one customer of each.
PERSONS = 2000


def person_of(serial):
    return (serial // len(FAMILIES)) % PERSONS


def event(topic, serial):
    value = copy.deepcopy(templates[topic])
    person = person_of(serial)
    openid, unionid, phone = f"oQx{person:08d}", f"o6_{person:08d}", f"139{person:08d}"
    # Amounts vary by serial, and one till transaction in four is a sale, the others returns
    # of earlier ones, so that the profiles' sums say which events were folded.
    amount = 100 * (1 + serial % 997)
    if topic == "pos.transactions":
        value["till_id"] = f"T{serial % 17:02d}"
        value["serial"] = f"{serial:08d}"
        value["member_card"] = f"LX88{person:08d}"
        value["phone"] = phone
        if (serial // len(FAMILIES)) % 4 == 0:
            value["kind"], value["original_serial"] = "SALE", None
        value["total_minor"] = amount
        for tender in value["tenders"]:
            tender["amount_minor"] = amount
        key = f"{value['store_id']}/{value['till_id']}"
    elif topic == "ecom.orders":
        value["order_id"] = f"E{serial:012d}"
        value["total_minor"] = value["paid_minor"] = amount
        buyer = value["buyer"]
        buyer["platform_buyer_id"] = f"yz_open_{person:08d}"
        buyer["phone"] = f"+86 {phone}"
        buyer["wechat_openid"], buyer["wechat_unionid"] = openid, unionid
        key = f"{value['shop_id']}/{value['order_id']}"
    else:
        value["msg_id"] = f"m{serial:012d}"
        value["openid"], value["unionid"] = openid, unionid
        key = value["openid"]
    return key, value


def money(topic, value):
    """What a valid record is to a profile's order facts: a sale, a return or an online order
    (paid), and its amount; nothing for a WeChat event."""
    if topic == "pos.transactions":
        return value["kind"], value["total_minor"]
    if topic == "ecom.orders":
        return "ORDER", value["paid_minor"]
    return None, 0


def poison(kind, topic, key, value, ctx):
    if kind == "over_long":
        value = copy.deepcopy(value)
        field = {"pos.transactions": "store_id", "ecom.orders": "order_id"}.get(topic, "app_id")
        value[field] = "X" * 500
        return serializers[topic](value, ctx)
    if kind == "foreign_schema":
        return foreign({"till": key, "amount": 1.5}, ctx)
    data = bytearray(serializers[topic](value, ctx))
    if kind == "truncated":
        return bytes(data[: max(6, len(data) // 2)])
    if kind == "unknown_schema_id":
        data[1:5] = (987654).to_bytes(4, "big")
        return bytes(data)
    if kind == "bad_magic":
        data[0] = 7
        return bytes(data)
    raise ValueError(kind)


POISON_KINDS = ["truncated", "unknown_schema_id", "bad_magic", "foreign_schema", "over_long"]
topics = list(FAMILIES)
prepared = []
for serial in range(count):
    topic = topics[serial % len(topics)]
    key, value = event(topic, serial)
    ctx = SerializationContext(topic, MessageField.VALUE)
    if rng.randrange(1000) < poison_per_mille:
        kind = POISON_KINDS[serial % len(POISON_KINDS)]
        prepared.append((topic, key, poison(kind, topic, key, value, ctx), kind, None, (None, 0)))
    else:
        prepared.append((topic, key, serializers[topic](value, ctx), "valid", person_of(serial),
                         money(topic, value)))
open(out + ".ready", "w").write(str(foreign_id))

producer = Producer({
    "bootstrap.servers": bootstrap,
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.num.messages": 2000,
})
delivered = []
failed = []


def report(error, message, what, person, money):
    if error is not None:
        failed.append(str(error))
    else:
        delivered.append({"topic": message.topic(), "partition": message.partition(),
                          "offset": message.offset(), "what": what, "person": person,
                          "money": money[0], "amount_minor": money[1]})


started = time.time()
for sent, (topic, key, payload, what, person, value_money) in enumerate(prepared):
    if rate > 0:
        ahead = sent / rate - (time.time() - started)
        if ahead > 0:
            producer.poll(ahead)
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=payload,
                             on_delivery=lambda e, m, w=what, p=person, v=value_money: report(e, m, w, p, v))
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
producer.flush(120)
json.dump({"delivered": delivered, "failed": failed, "foreign_schema_id": foreign_id}, open(out, "w"))

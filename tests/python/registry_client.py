"""Drives Kinfold's /registry with Confluent's own Python client and posts Avro records it
serialised (Confluent wire format) to /v1/events.

Usage: registry_client.py BASE_URL COUNT
Prints JSON: the schema id, what the registry API answered, and the per-record results.
"""
import json
import sys
import urllib.request

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

base, count = sys.argv[1], int(sys.argv[2])
client = SchemaRegistryClient({"url": f"{base}/registry"})
subject = "pos.transactions-value"

# The client's own writer schema: Kinfold's current one plus an optional field of the POS
# vendor's, which makes a new, backward-compatible version.
current = json.loads(client.get_latest_version(subject).schema.schema_str)
current["fields"].append({"name": "vendor_note", "type": ["null", "string"], "default": None})
writer_schema = json.dumps(current)

compatible = client.test_compatibility(subject, Schema(writer_schema, "AVRO"))

# A change that drops a default and adds a required field must be refused with 409.
incompatible = json.loads(writer_schema)
incompatible["fields"].append({"name": "required_without_default", "type": "string"})
refused_code = None
try:
    client.register_schema(subject, Schema(json.dumps(incompatible), "AVRO"))
except SchemaRegistryError as error:
    refused_code = error.http_status_code

serializer = AvroSerializer(client, writer_schema, conf={"auto.register.schemas": True})
context = SerializationContext("pos.transactions", MessageField.VALUE)
results = []
keys = []
for serial in range(count):
    record = {
        "kind": "SALE",
        "brand": "registry-test",
        "store_id": "S042",
        "till_id": "T1",
        "serial": f"R{serial:05d}",
        "business_day": "2026-11-20",
        "occurred_at_local": "2026-11-20T10:15:00",
        "time_zone": None,
        "currency": "CNY",
        "lines": [{"sku": "SKU-1", "description": "tea", "category": None, "quantity": 2,
                   "unit_price_minor": 1500, "discount_minor": 0}],
        "tenders": [{"kind": "WECHAT_PAY", "amount_minor": 3000, "reference": None}],
        "total_minor": 3000,
        "member_card": f"MC{serial:06d}",
        "phone": None,
        "cashier_id": None,
        "guide_id": "G7",
        "original_serial": None,
        "vendor_note": "from the till vendor",
    }
    payload = serializer(record, context)
    request = urllib.request.Request(
        f"{base}/v1/events", data=payload, method="POST",
        headers={"Content-Type": "application/vnd.confluent.avro"},
    )
    with urllib.request.urlopen(request) as response:
        results.append(json.loads(response.read())["results"][0])
    keys.append(record["serial"])

schema_id = int.from_bytes(payload[1:5], "big")
fetched = client.get_schema(schema_id)
print(json.dumps({
    "schema_id": schema_id,
    "fetched_schema_has_vendor_note": "vendor_note" in fetched.schema_str,
    "versions": client.get_versions(subject),
    "compatible": compatible,
    "incompatible_refused_with": refused_code,
    "serials": keys,
    "results": results,
}))

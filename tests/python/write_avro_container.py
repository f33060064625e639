"""Writes an Avro object container file of POS transactions with fastavro (a writer the project
did not write), using a given writer schema (for example Kinfold's frozen v1).

Usage: write_avro_container.py SCHEMA.avsc OUT.avro COUNT
"""
import json
import sys

import fastavro

schema = fastavro.parse_schema(json.load(open(sys.argv[1])))
count = int(sys.argv[3])
records = [
    {
        "kind": "RETURN" if i % 4 == 3 else "SALE",
        "brand": "container-test",
        "store_id": "S009",
        "till_id": "T3",
        "serial": f"F{i:05d}",
        "business_day": "2026-11-19",
        "occurred_at_local": "2026-11-19T18:30:00+08:00",
        "time_zone": None,
        "currency": "CNY",
        "lines": [{"sku": "SKU-9", "description": None, "category": "tea", "quantity": 1 + i % 3,
                   "unit_price_minor": 990, "discount_minor": 0}],
        "tenders": [{"kind": "CASH", "amount_minor": 990 * (1 + i % 3), "reference": None}],
        "total_minor": 990 * (1 + i % 3),
        "member_card": f"CARD{i:04d}" if i % 2 == 0 else "null",
        "phone": None,
        "cashier_id": "C1",
    }
    for i in range(count)
]
with open(sys.argv[2], "wb") as out:
    fastavro.writer(out, schema, records)
print(json.dumps({"written": count}))

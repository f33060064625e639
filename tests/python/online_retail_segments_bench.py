"""The baseline of the incremental segment benchmark: DuckDB recomputing the memberships of
100 segments over every Online Retail II member, as a batch recompute does, over the same rows
that `kinfold import online-retail` turns into member transactions.

Usage: online_retail_segments_bench.py CSV_OR_CSV_GZ ROUNDS NOW_US SEGMENTS_JSON
SEGMENTS_JSON is a list of {"orders": k} | {"net_pounds": v} | {"quiet_days": d} |
{"orders": k, "net_pounds": v}: at least k sale invoices, net spend (sales less returns) of at
least v pounds, the last sale invoice more than d days before NOW_US (an instant, micros).
Prints JSON: {"customers", "counts": members per segment, "seconds": {"recompute": [per round],
"predicates": [per round]}}.

Loading the CSV into an in-memory table of member lines happens once, untimed. "recompute"
times aggregating each customer's facts from the lines and materialising every segment's
members; "predicates" times the members only, over the facts table already built.
"""
import json
import sys
import time

import duckdb

from online_retail_rows import member_lines

path, rounds, now_us, segments = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
con = duckdb.connect()
con.execute("SET threads TO 1")
con.execute(member_lines(path))

FACTS = """
    CREATE OR REPLACE TEMP TABLE facts AS
    SELECT customer,
           count(DISTINCT invoice) FILTER (WHERE NOT is_return) AS orders,
           sum(CASE WHEN is_return THEN -amount ELSE amount END) AS net_pence,
           epoch_us(timezone('Europe/London', max(invoice_time) FILTER (WHERE NOT is_return)))
               AS last_sale_us
    FROM lines
    GROUP BY customer
"""


def predicate(segment):
    parts = []
    if "orders" in segment:
        parts.append(f"orders >= {int(segment['orders'])}")
    if "net_pounds" in segment:
        parts.append(f"net_pence >= {int(segment['net_pounds']) * 100}")
    if "quiet_days" in segment:
        parts.append(f"last_sale_us < {now_us - int(segment['quiet_days']) * 86_400_000_000}")
    return " AND ".join(parts)


MEMBERS = "CREATE OR REPLACE TEMP TABLE members AS " + " UNION ALL ".join(
    f"SELECT {index} AS segment, customer FROM facts WHERE {predicate(segment)}"
    for index, segment in enumerate(segments)
)

seconds = {"recompute": [], "predicates": []}
for _ in range(rounds):
    started = time.perf_counter()
    con.execute(FACTS)
    con.execute(MEMBERS)
    seconds["recompute"].append(time.perf_counter() - started)
    started = time.perf_counter()
    con.execute(MEMBERS)
    seconds["predicates"].append(time.perf_counter() - started)

counts = dict(con.execute("SELECT segment, count(*) FROM members GROUP BY segment").fetchall())
(customers,) = con.execute("SELECT count(*) FROM facts").fetchone()
print(json.dumps({
    "customers": customers,
    "counts": [counts.get(index, 0) for index in range(len(segments))],
    "seconds": seconds,
}))

"""The baseline of the segment scale benchmark: DuckDB running each segment's predicate over
the same synthetic profiles, exported to Parquet.

Usage: segments_scale_bench.py CSV PARQUET ROUNDS SAMPLE QUERIES_JSON COLUMNS_JSON
QUERIES_JSON is a list of {"name": ..., "where": SQL predicate, where {source} stands for the
profiles}; COLUMNS_JSON lists each CSV
column, in order, as [name, SQL type]. The CSV (the profiles as the benchmark wrote them, a header row, empty
fields for unknown values) is copied to PARQUET once, untimed. Each round then times, for each query, the count of the rows the predicate holds for
("count") and that count together with SAMPLE of their customer ids ("preview": the two
statements a preview needs), over the Parquet file, with DuckDB's default threads.
Prints JSON: {"rows", "threads", "queries": {name: {"count", "count_s": [per round],
"preview_s": [per round]}}}.
"""
import json
import sys
import time

import duckdb

csv_path, parquet, rounds, sample, queries, columns = (
    sys.argv[1],
    sys.argv[2],
    int(sys.argv[3]),
    int(sys.argv[4]),
    json.loads(sys.argv[5]),
    json.loads(sys.argv[6]),
)
con = duckdb.connect()
types = ", ".join(f"'{name}': '{kind}'" for name, kind in columns)
con.execute(
    f"COPY (SELECT * FROM read_csv('{csv_path}', header = true, columns = {{{types}}})) "
    f"TO '{parquet}' (FORMAT parquet)"
)
rows = con.execute(f"SELECT count(*) FROM read_parquet('{parquet}')").fetchone()[0]
threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
source = f"read_parquet('{parquet}')"

out = {"rows": rows, "threads": threads, "queries": {}}
for query in queries:
    out["queries"][query["name"]] = {"count": None, "count_s": [], "preview_s": []}
for _ in range(rounds):
    for query in queries:
        # A predicate may read the profiles again (a rank over all of them) as {source}.
        where = query["where"].replace("{source}", source)
        entry = out["queries"][query["name"]]
        started = time.perf_counter()
        count = con.execute(f"SELECT count(*) FROM {source} WHERE {where}").fetchone()[0]
        entry["count_s"].append(time.perf_counter() - started)
        started = time.perf_counter()
        con.execute(f"SELECT count(*) FROM {source} WHERE {where}").fetchone()
        ids = con.execute(
            f"SELECT customer FROM {source} WHERE {where} LIMIT {sample}"
        ).fetchall()
        entry["preview_s"].append(time.perf_counter() - started)
        assert len(ids) == min(sample, count)
        if entry["count"] is None:
            entry["count"] = count
        assert entry["count"] == count
print(json.dumps(out))

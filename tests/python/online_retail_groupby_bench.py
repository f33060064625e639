"""The baseline of the profile fold benchmark: DuckDB computing, with one GROUP BY per
customer (and one per customer and SKU for the top SKUs), the order facts a Kinfold profile
holds, over the same rows of the Online Retail II data set that `kinfold import online-retail`
turns into member transactions.

Usage: online_retail_groupby_bench.py CSV_OR_CSV_GZ ROUNDS THREADS[,THREADS...]
Prints JSON: {"rows": lines loaded, "customers", "orders", "returns", "net_pence",
"top_units": each customer's top SKU's net units, summed, "seconds": {threads: [per round]}}.

Loading the CSV, keeping the sale and return lines of member cards, typing the columns and
giving each line its invoice's time (the earliest line's) happen once, untimed, into an
in-memory table: Kinfold's side starts from canonical events in memory likewise. Each timed
round materialises the per-customer answer as a table (no rows cross into Python).
"""
import json
import sys
import time

import duckdb

from online_retail_rows import member_lines

path, rounds, threads_list = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")

con = duckdb.connect()
con.execute(member_lines(path))

FACTS = """
    CREATE OR REPLACE TEMP TABLE facts AS
    WITH skus AS (
        SELECT customer, sku,
               sum(CASE WHEN is_return THEN -units ELSE units END) AS units,
               sum(CASE WHEN is_return THEN -amount ELSE amount END) AS spend
        FROM lines
        GROUP BY customer, sku
    ), top AS (
        SELECT customer,
               list(sku ORDER BY units DESC, spend DESC, sku)[1:5] AS top_skus,
               max(units) AS top_units
        FROM skus
        WHERE units > 0
        GROUP BY customer
    ), facts AS (
        SELECT customer,
               count(DISTINCT invoice) FILTER (WHERE NOT is_return) AS orders,
               count(DISTINCT invoice) FILTER (WHERE is_return) AS returns,
               coalesce(sum(amount) FILTER (WHERE NOT is_return), 0) AS gross,
               coalesce(sum(amount) FILTER (WHERE is_return), 0) AS returned,
               min(invoice_time) FILTER (WHERE NOT is_return) AS first_purchase,
               max(invoice_time) FILTER (WHERE NOT is_return) AS last_purchase
        FROM lines
        GROUP BY customer
    )
    SELECT f.*,
           gross - returned AS net,
           gross // nullif(orders, 0) AS average_order_value,
           CASE WHEN orders >= 2
                THEN epoch(last_purchase - first_purchase) / 86400.0 / (orders - 1) END
               AS mean_interval_days,
           t.top_skus,
           t.top_units
    FROM facts f LEFT JOIN top t USING (customer)
"""

seconds = {}
for threads in threads_list:
    con.execute(f"SET threads = {int(threads)}")
    runs = []
    for _ in range(rounds):
        started = time.perf_counter()
        con.execute(FACTS)
        runs.append(time.perf_counter() - started)
    seconds[threads] = runs

(lines,) = con.execute("SELECT count(*) FROM lines").fetchone()
customers, orders, returns, net, top_units = con.execute(
    "SELECT count(*), sum(orders), sum(returns), sum(net), coalesce(sum(top_units), 0) FROM facts"
).fetchone()
print(json.dumps({
    "rows": int(lines),
    "customers": int(customers),
    "orders": int(orders),
    "returns": int(returns),
    "net_pence": int(net),
    "top_units": int(top_units),
    "seconds": seconds,
}))

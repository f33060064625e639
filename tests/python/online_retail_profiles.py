"""Each customer's order facts in the Online Retail II data set, from DuckDB, independently of
Kinfold: what its profile must say after `kinfold import online-retail` and the profile stage.

Usage: online_retail_profiles.py CSV_OR_CSV_GZ
Prints JSON: {customer id: {orders, returns, net_pence, first_purchase_us, last_purchase_us}}.

Rows that are sale or return lines (as online_retail_expected.py defines them) of a customer:
orders are their distinct sale invoices, returns their distinct return (C) invoices, net spend
the sale lines' quantity times price less the return lines', in pence; first and last purchase
the earliest and latest sale invoice time, a London wall-clock time (the earlier of an
ambiguous hour, an hour on for one that does not exist) as microseconds since the epoch. An
invoice's time is its earliest line's: the lines of one invoice can straddle a minute.
"""
import json
import sys

import duckdb
import pandas as pd

path = sys.argv[1]

from online_retail_rows import MAPPABLE

con = duckdb.connect()
con.execute(f"CREATE TABLE rows AS SELECT * FROM read_csv('{path}', header = true, all_varchar = true)")
rows = con.execute(f"""
    WITH lines AS (
        SELECT *, min(InvoiceDate) OVER (PARTITION BY Invoice) AS invoice_time
        FROM rows
        WHERE {MAPPABLE} AND coalesce(trim("Customer ID"), '') <> ''
    )
    SELECT
        regexp_replace("Customer ID", '\\.0$', '') AS customer,
        count(DISTINCT Invoice) FILTER (WHERE NOT starts_with(Invoice, 'C')) AS orders,
        count(DISTINCT Invoice) FILTER (WHERE starts_with(Invoice, 'C')) AS returns,
        CAST(sum(CASE WHEN starts_with(Invoice, 'C') THEN -1 ELSE 1 END
                 * abs(CAST(Quantity AS BIGINT)) * CAST(Price AS DECIMAL(18, 2)) * 100) AS BIGINT) AS net_pence,
        min(invoice_time) FILTER (WHERE NOT starts_with(Invoice, 'C')) AS first_local,
        max(invoice_time) FILTER (WHERE NOT starts_with(Invoice, 'C')) AS last_local
    FROM lines
    GROUP BY 1
""").fetchall()


def london_micros(local):
    if local is None:
        return None
    stamp = pd.Timestamp(local).tz_localize(
        "Europe/London", ambiguous=True, nonexistent=pd.Timedelta(hours=1)
    )
    return int(stamp.value // 1000)


answer = {}
for customer, orders, returns, net, first_local, last_local in rows:
    answer[customer] = {
        "orders": int(orders),
        "returns": int(returns),
        "net_pence": int(net),
        "first_purchase_us": london_micros(first_local),
        "last_purchase_us": london_micros(last_local),
    }
print(json.dumps(answer))

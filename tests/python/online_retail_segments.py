"""Sizes of five segments of the Online Retail II members, from DuckDB and pandas,
independently of Kinfold: what the segment rules must count.

Usage: online_retail_segments.py CSV_OR_CSV_GZ STOCK_CODE
Prints JSON: {"customers", "now_us", "dormant_90d", "bought", "five_orders", "net_1000",
"top_5_percent"}.

The rows are the member sale and return lines (online_retail_rows.MAPPABLE, a Customer ID);
an invoice's time is its earliest line's, a London wall-clock time turned into an instant (as
online_retail_profiles.py does). "Now" is the last member invoice's instant.
- dormant_90d: the last sale invoice is more than 90 days before now;
- bought: a sale line of the stock code;
- five_orders: at least 5 distinct sale invoices;
- net_1000: sales less returns (quantity times price) at least 1,000 pounds;
- top_5_percent: percent_rank over every customer by that net spend at least 0.95.
"""
import json
import sys

import duckdb
import pandas as pd

from online_retail_rows import member_lines

path, stock_code = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(member_lines(path))
per_customer = con.execute(f"""
    SELECT customer,
           count(DISTINCT invoice) FILTER (WHERE NOT is_return) AS orders,
           sum(CASE WHEN is_return THEN -amount ELSE amount END) AS net_pence,
           max(invoice_time) FILTER (WHERE NOT is_return) AS last_sale,
           bool_or(NOT is_return AND sku = '{stock_code}') AS bought,
           percent_rank() OVER (ORDER BY sum(CASE WHEN is_return THEN -amount ELSE amount END)) AS rank
    FROM lines
    GROUP BY customer
""").df()
(last_local,) = con.execute("SELECT max(invoice_time) FROM lines").fetchone()


def london_micros(local):
    stamp = pd.Timestamp(local).tz_localize(
        "Europe/London", ambiguous=True, nonexistent=pd.Timedelta(hours=1)
    )
    return int(stamp.value // 1000)


now = london_micros(last_local)
ninety_days = 90 * 86_400 * 1_000_000
dormant = sum(
    1
    for last in per_customer["last_sale"]
    if not pd.isna(last) and london_micros(last) < now - ninety_days
)
print(json.dumps({
    "customers": len(per_customer),
    "now_us": now,
    "dormant_90d": dormant,
    "bought": int(per_customer["bought"].sum()),
    "five_orders": int((per_customer["orders"] >= 5).sum()),
    "net_1000": int((per_customer["net_pence"] >= 100_000).sum()),
    "top_5_percent": int((per_customer["rank"] >= 0.95).sum()),
}))

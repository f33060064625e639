"""Independent answers for the Online Retail II import, from DuckDB and pandas.

Usage: online_retail_expected.py CSV_OR_CSV_GZ
Prints JSON: distinct invoices that are sales or returns (and those with a customer id),
line totals in pence, and the line numbers of rows that are not a sale or return line.

A row is a sale or return line when its invoice is digits (sale) or C + digits (return), its
price is not negative and is a whole number of pence (no digit other than 0 after the second
decimal), and its quantity is positive on a sale and negative on a return.
"""
import json
import sys

import duckdb
import pandas as pd

path = sys.argv[1]

from online_retail_rows import MAPPABLE

con = duckdb.connect()
con.execute(f"CREATE TABLE rows AS SELECT * FROM read_csv('{path}', header = true, all_varchar = true)")
counts = con.execute(f"""
    SELECT
        count(*) AS rows,
        count(DISTINCT Invoice) FILTER (WHERE {MAPPABLE} AND NOT starts_with(Invoice, 'C')) AS sales,
        count(DISTINCT Invoice) FILTER (WHERE {MAPPABLE} AND starts_with(Invoice, 'C')) AS returns,
        count(DISTINCT Invoice) FILTER (WHERE {MAPPABLE} AND coalesce("Customer ID", '') <> '') AS with_customer,
        CAST(coalesce(sum(abs(CAST(Quantity AS BIGINT)) * CAST(Price AS DECIMAL(18, 2)) * 100)
             FILTER (WHERE {MAPPABLE} AND NOT starts_with(Invoice, 'C')), 0) AS BIGINT) AS sales_total_pence,
        CAST(coalesce(sum(abs(CAST(Quantity AS BIGINT)) * CAST(Price AS DECIMAL(18, 2)) * 100)
             FILTER (WHERE {MAPPABLE} AND starts_with(Invoice, 'C')), 0) AS BIGINT) AS returns_total_pence,
        count(*) FILTER (WHERE NOT ({MAPPABLE})) AS unmapped_rows
    FROM rows
""").fetchone()
names = ["rows", "sales", "returns", "with_customer", "sales_total_pence", "returns_total_pence", "unmapped_rows"]
answer = dict(zip(names, [int(value) for value in counts]))

# Line numbers with pandas: the header is line 1, so row i (0-based) is on line i + 2.
frame = pd.read_csv(path, dtype=str, keep_default_na=False)
invoice = frame["Invoice"]
is_return = invoice.str.startswith("C")
quantity = pd.to_numeric(frame["Quantity"])
price = pd.to_numeric(frame["Price"])
mappable = (
    invoice.str.fullmatch(r"C?[0-9]+")
    & (price >= 0)
    & frame["Price"].str.fullmatch(r"[0-9]*(\.[0-9]{0,2}0*)?")
    & ((is_return & (quantity < 0)) | (~is_return & (quantity > 0)))
)
answer["unmapped_lines"] = [int(i) + 2 for i in frame.index[~mappable]]
print(json.dumps(answer))

"""Which rows of the Online Retail II data set are sale or return lines, as DuckDB SQL: shared
by the scripts that answer for the import independently of Kinfold.

A row is a sale or return line when its invoice is digits (sale) or C + digits (return), its
price is not negative and is a whole number of pence (no digit other than 0 after the second
decimal), and its quantity is positive on a sale and negative on a return.
"""

MAPPABLE = """
    regexp_full_match(Invoice, 'C?[0-9]+')
    AND CAST(Price AS DECIMAL(18, 2)) >= 0
    AND regexp_full_match(Price, '[0-9]*(\\.[0-9]{0,2}0*)?')
    AND ((starts_with(Invoice, 'C') AND CAST(Quantity AS BIGINT) < 0)
         OR (NOT starts_with(Invoice, 'C') AND CAST(Quantity AS BIGINT) > 0))
"""


def member_lines(path):
    """SQL that makes the table `lines` of the member sale and return lines of the CSV at
    `path`, typed: customer (the card, without a trailing .0), invoice, is_return, sku, units
    and amount (pence, both positive; is_return gives the direction), and invoice_time (the
    invoice's earliest line's, a London wall-clock time)."""
    return f"""
        CREATE TABLE lines AS
        SELECT
            regexp_replace(trim("Customer ID"), '\\.0$', '') AS customer,
            Invoice AS invoice,
            starts_with(Invoice, 'C') AS is_return,
            trim(StockCode) AS sku,
            abs(CAST(Quantity AS BIGINT)) AS units,
            CAST(abs(CAST(Quantity AS BIGINT)) * CAST(Price AS DECIMAL(18, 2)) * 100 AS BIGINT) AS amount,
            min(CAST(InvoiceDate AS TIMESTAMP)) OVER (PARTITION BY Invoice) AS invoice_time
        FROM read_csv('{path}', header = true, all_varchar = true)
        WHERE {MAPPABLE} AND coalesce(trim("Customer ID"), '') <> ''
    """


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

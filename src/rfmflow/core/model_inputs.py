"""The inputs of the buy-till-you-die models, as one SQL query for every engine.

The models see a customer's purchase history as *transactions on distinct days*: several
purchases on one day are one transaction whose value is their sum (the convention of the
CDNOW studies the published estimates come from). Transactions are the events the scheme's
frequency counts (``metrics.frequency.events``, ``purchase`` by default); refunds are not
transactions and do not change their value.

With a calibration end day ``c`` (the as-of day when there is none) and an as-of day ``a``,
the query returns one row per customer with a transaction on or before ``c``:

=================== ==================================================================
column              meaning
=================== ==================================================================
customer_id         the customer
first_day           day of the first transaction (days since 1970-01-01)
last_day            day of the last transaction on or before ``c``
x                   repeat transactions on or before ``c`` (distinct days - 1)
repeat_value_minor  summed value of those repeat transactions, in minor units (NULL when
                    none has an amount)
repeat_valued       repeat transactions that have an amount
holdout_x           transactions after ``c`` and on or before ``a``
=================== ==================================================================

The models' ``t_x`` is ``last_day - first_day`` and their ``T`` is ``c - first_day``, in
the chosen time unit (days, or weeks = days / 7).
"""

from __future__ import annotations

import sqlglot

from rfmflow.core.query import DIALECTS
from rfmflow.core.scheme import Scheme
from rfmflow.core.sql_text import quote_literal

MODEL_INPUT_COLUMNS = (
    "customer_id",
    "first_day",
    "last_day",
    "x",
    "repeat_value_minor",
    "repeat_valued",
    "holdout_x",
)


def build_model_inputs_query(
    scheme: Scheme,
    *,
    calibration_end_day: int,
    as_of_day: int,
    events: str = "events",
    dialect: str = "duckdb",
    order_by_customer: bool = False,
) -> str:
    """One SELECT returning :data:`MODEL_INPUT_COLUMNS` (see the module docstring)."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    if calibration_end_day > as_of_day:
        raise ValueError("the calibration end must not be after the as-of day")
    kinds = scheme.metrics.frequency.events
    type_filter = (
        "TRUE"
        if kinds == "any"
        else "event_type IN (" + ", ".join(quote_literal(k.lower()) for k in kinds) + ")"
    )
    cal, as_of = int(calibration_end_day), int(as_of_day)
    sql = (
        "WITH tx AS (SELECT customer_id, day, SUM(amount_minor) AS value_minor "
        f"FROM {events} WHERE {type_filter} AND day <= {as_of} GROUP BY customer_id, day), "
        "firsts AS (SELECT customer_id, MIN(day) AS first_day, "
        f"MAX(CASE WHEN day <= {cal} THEN day END) AS last_day, "
        f"COUNT(CASE WHEN day <= {cal} THEN 1 END) - 1 AS x, "
        f"COUNT(CASE WHEN day > {cal} THEN 1 END) AS holdout_x FROM tx GROUP BY customer_id), "
        "repeats AS (SELECT tx.customer_id, SUM(tx.value_minor) AS repeat_value_minor, "
        "COUNT(tx.value_minor) AS repeat_valued FROM tx JOIN firsts ON tx.customer_id = firsts.customer_id "
        f"WHERE tx.day > firsts.first_day AND tx.day <= {cal} GROUP BY tx.customer_id) "
        "SELECT f.customer_id, f.first_day, f.last_day, f.x, "
        "CAST(r.repeat_value_minor AS BIGINT) AS repeat_value_minor, "
        "COALESCE(r.repeat_valued, 0) AS repeat_valued, f.holdout_x "
        "FROM firsts AS f LEFT JOIN repeats AS r ON f.customer_id = r.customer_id "
        f"WHERE f.first_day <= {cal}" + (" ORDER BY f.customer_id" if order_by_customer else "")
    )
    return str(sqlglot.transpile(sql, read="duckdb", write=dialect)[0])

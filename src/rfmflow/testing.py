"""Helpers for testing your own schemes, in the spirit of ``click.testing``.

>>> from datetime import date
>>> from rfmflow.testing import events, assert_covers_every_combination
>>> table = events(
...     ("alice", date(2024, 5, 1), 30),
...     ("alice", date(2024, 5, 20), 12.5),
...     ("bob", date(2024, 1, 3), 99, "purchase"),
...     ("bob", date(2024, 1, 9), -20, "refund"),
... )
>>> import rfmflow
>>> rows = rfmflow.score(table, scheme="rfm11", as_of="2024-06-01").customers.to_pylist()
>>> [(r["customer_id"], r["recency_days"], r["frequency"], str(r["monetary"])) for r in rows]
[('alice', 12, 2, '42.50'), ('bob', 150, 1, '79.00')]
>>> assert_covers_every_combination(rfmflow.load_scheme("telegram-scrm"))
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa

from rfmflow.core.coverage import check_coverage
from rfmflow.core.scheme import Scheme

EventRow = (
    tuple[str, date | datetime, float | int | str | Decimal | None]
    | tuple[str, date | datetime, float | int | str | Decimal | None, str]
)


def events(*rows: EventRow) -> pa.Table:
    """An event table from ``(customer_id, when, amount[, type])`` tuples.

    ``type`` defaults to ``purchase``; amounts are kept as text so they stay exact. The
    result can be passed to :func:`rfmflow.score` as is.
    """
    customers, whens, amounts, types = [], [], [], []
    for row in rows:
        customers.append(row[0])
        when = row[1]
        whens.append(when.isoformat())
        amounts.append(None if row[2] is None else str(row[2]))
        types.append(row[3] if len(row) > 3 else "purchase")
    return pa.table(
        {
            "customer_id": pa.array(customers, pa.string()),
            "occurred_at": pa.array(whens, pa.string()),
            "type": pa.array(types, pa.string()),
            "amount": pa.array(amounts, pa.string()),
        }
    )


def assert_covers_every_combination(scheme: Scheme) -> None:
    """Fail with the scheme checker's messages unless every score combination has a segment."""
    coverage = check_coverage(scheme)
    if not coverage.complete or coverage.never_matching:
        raise AssertionError("; ".join(coverage.messages()))

"""Where a full scoring run reads its per-customer aggregates from, and the settings it runs with.

The RFM query (:func:`rfmflow.core.query.build_query`) starts by aggregating events per
customer (last day, first day, frequency, money), then scores, ranks and labels those rows.
A full run needs that first step for every customer, and the service already keeps it:
ingest updates ``customers`` (``first_day``, ``last_day``, ``last_purchase_day``,
``purchases`` = distinct orders, ``monetary_minor``, ``n_<type>`` counts) in the same
transaction as each event, and :func:`rfmflow.service.ingest.rebuild_customers` recomputes
it from the events alone. So for a scheme whose metrics are all those aggregates hold, the
run reads the customers' rows (one per customer) instead of scanning every event; the rest
of the query is the same definition. A test checks that both give the same rows for every
built-in scheme this applies to, on SQLite and PostgreSQL.

The aggregates answer a scheme when (:func:`scan_reasons` names what does not):

- recency reads ``purchase`` events (``last_purchase_day``) or ``any`` (``last_day``);
- frequency has no window and no decay, and counts orders of ``purchase`` events
  (``purchases``) or events of any types (``n_events`` or a sum of ``n_<type>``);
- monetary has no window and no decay, and is the ``amount`` of ``purchase`` and ``refund``
  events (``monetary_minor``) or the ``count`` of events of any types.

Anything else (``window_days``, ``half_life_days``, ``count: days``, orders of other event
types, money of other types, ``field:`` measures) scans the events. Customers with an event
after the as-of day (stamped up to a day ahead of the clock, or a run as of a past day) are
aggregated from their own events (an index lookup), since the query leaves such events out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.engine import Connection

from rfmflow.core.query import build_aggregate, build_query
from rfmflow.core.scheme import Scheme
from rfmflow.service.events import EVENT_TYPES, MONEY_TYPES
from rfmflow.service.settings import Settings

EVENT_COLUMNS = "customer_id, day, event_type, amount_minor, order_id"
PURCHASES = frozenset({"purchase"})
MONEY = frozenset(MONEY_TYPES)
_ALL_EVENTS = "rfmflow_all_events"

POSTGRES_STAGE_SETTINGS: tuple[tuple[str, str], ...] = (("work_mem", "'256MB'"),)
"""``SET LOCAL`` for a run's transactions on PostgreSQL: sorts and hashes of a million rows
in memory rather than in temporary files."""
POSTGRES_SCAN_SETTINGS: tuple[tuple[str, str], ...] = (
    ("enable_indexscan", "off"),
    ("enable_bitmapscan", "off"),
)
"""Added when the stage scans every event: a sequential scan and one sort beat walking the
``(customer_id, day)`` index with random heap reads (12.9 s against 8.1 s at 3M events)."""


def _types(events: Sequence[str] | str) -> frozenset[str] | None:
    """The lower-cased event types of a metric; None for ``any``."""
    return None if events == "any" else frozenset(e.lower() for e in events)


def scan_reasons(scheme: Scheme) -> list[str]:
    """Why ``scheme``'s metrics cannot be read from the customers' aggregates (empty: they can)."""
    m = scheme.metrics
    out: list[str] = []
    recency = _types(m.recency.events)
    if recency is not None and recency != PURCHASES:
        out.append("recency reads events other than purchases (or any)")
    fq = m.frequency
    if fq.window_days is not None:
        out.append("frequency has a window (window_days)")
    if fq.half_life_days is not None:
        out.append("frequency is time-decayed (half_life_days)")
    if fq.count == "days":
        out.append("frequency counts days")
    if fq.count in ("auto", "orders") and _types(fq.events) != PURCHASES:
        out.append("frequency counts orders of events other than purchases")
    mo = m.monetary
    if mo.window_days is not None:
        out.append("monetary has a window (window_days)")
    if mo.half_life_days is not None:
        out.append("monetary is time-decayed (half_life_days)")
    if mo.measure == "amount" and _types(mo.events) != MONEY:
        out.append("monetary sums amounts of events other than purchases and refunds")
    if mo.field_name is not None:
        out.append(f"monetary reads an event field ({mo.measure})")
    return out


def _count(events: Sequence[str] | str) -> str:
    """The number of a customer's events of these types, from the ``n_<type>`` counts."""
    types = _types(events)
    if types is None:
        return "n_events"
    known = [f"n_{kind}" for kind in EVENT_TYPES if kind in types]
    return " + ".join(known) if known else "0"


def aggregate_select(scheme: Scheme, as_of_day: int) -> str:
    """The customers' rows as the RFM query's first step would compute them (DuckDB SQL,
    transpiled with the rest), for the customers whose events all fall on or before
    ``as_of_day``. Only for schemes without :func:`scan_reasons`."""
    if scan_reasons(scheme):
        reasons = "; ".join(scan_reasons(scheme))
        raise ValueError(f"scheme {scheme.name!r} needs the scan of events: {reasons}")
    m = scheme.metrics
    last = "last_day" if _types(m.recency.events) is None else "last_purchase_day"
    frequency = "purchases" if m.frequency.count in ("auto", "orders") else _count(m.frequency.events)
    if m.monetary.measure == "amount":
        monetary = "CAST(monetary_minor AS BIGINT) AS monetary_minor"
    else:
        monetary = f"({_count(m.monetary.events)}) AS monetary"
    return (
        f"SELECT customer_id, {last} AS last_day, first_day, ({frequency}) AS frequency, {monetary} "
        f"FROM customers WHERE last_day <= {int(as_of_day)}"
    )


def customers_after(conn: Connection, as_of_day: int) -> bool:
    """Whether some customer has an event after ``as_of_day``."""
    row = conn.exec_driver_sql(f"SELECT 1 FROM customers WHERE last_day > {int(as_of_day)} LIMIT 1").first()
    return row is not None


def aggregates_query(conn: Connection, scheme: Scheme, as_of_day: int, settings: Settings) -> str | None:
    """The RFM query of ``scheme`` for every customer, reading the customers' aggregates;
    None when the scheme needs the scan of every event (:func:`scan_reasons`)."""
    if scan_reasons(scheme):
        return None
    dialect = "postgres" if conn.dialect.name == "postgresql" else "sqlite"
    relation = aggregate_select(scheme, as_of_day)
    if customers_after(conn, as_of_day):
        late = (
            f"(SELECT {EVENT_COLUMNS} FROM events WHERE customer_id IN "
            f"(SELECT customer_id FROM customers WHERE last_day > {int(as_of_day)}))"
        )
        scan = build_aggregate(
            scheme,
            as_of_day=as_of_day,
            events=f"{late} AS {_ALL_EVENTS}",
            dialect="duckdb",
            money_scale=settings.money_decimals,
            has_order_id=True,
        )
        relation = f"{relation} UNION ALL {scan}"
    plan = build_query(
        scheme,
        as_of_day=as_of_day,
        events=_ALL_EVENTS,
        dialect=dialect,
        money_scale=settings.money_decimals,
        has_order_id=True,
        aggregates=f"({relation})",
    )
    return plan.sql


def settings_sql(dialect: str, *, scan: bool) -> Iterable[str]:
    """The statements that set up a run's transaction (PostgreSQL ``SET LOCAL``)."""
    if dialect != "postgresql":
        return []
    chosen = POSTGRES_STAGE_SETTINGS + (POSTGRES_SCAN_SETTINGS if scan else ())
    return [f"SET LOCAL {name} = {value}" for name, value in chosen]


__all__ = [
    "aggregate_select",
    "aggregates_query",
    "customers_after",
    "scan_reasons",
    "settings_sql",
]

"""Ingest: store events idempotently and keep every customer's aggregates current.

:func:`ingest` takes validated :class:`~rfmflow.service.events.EventIn` objects (whatever
way they came in) and, in ONE transaction:

1. checks what ``EventIn`` cannot know alone: the installation's currency, the number of
   decimals of the money, the day range, events from the future;
2. inserts the events whose ``event_id`` is new (``INSERT ... ON CONFLICT DO NOTHING``: the
   database's unique constraint decides, so concurrent requests and restarts never count
   an event twice);
3. adds the newly inserted events to their customers' aggregates (``customers``): days
   as min/max, so late and out-of-order events land by ``occurred_at``; counts and money
   added up.

Each item gets a result: ``accepted``, ``duplicate`` (its ``event_id`` was seen before, also
earlier in the same batch) or ``rejected`` with field errors. Rejected items never stop the
others unless ``atomic=True`` is asked for, in which case nothing is written when any item
is rejected (the others are answered ``skipped``). A database failure rolls the whole call
back and raises: nothing is half written, and nothing unwritten is acknowledged.

:func:`rebuild_customers` recomputes the aggregates from the events alone; it must agree
with the live path (a test checks it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from rfmflow.service.db.engine import run_write
from rfmflow.service.db.store import add_to_customers, insert_new_events, insert_new_orders, rebuild_derived
from rfmflow.service.db.tables import EVENT_COUNT_COLUMNS, erasures
from rfmflow.service.events import MONEY_TYPES, EventIn
from rfmflow.service.scoring_live import rescore_after_events
from rfmflow.service.settings import Settings

Status = Literal["accepted", "duplicate", "rejected", "skipped"]

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
FIRST_DAY = date(1900, 1, 1).toordinal() - EPOCH_ORDINAL
LAST_DAY = date(2199, 12, 31).toordinal() - EPOCH_ORDINAL
FUTURE_TOLERANCE = timedelta(days=1)
"""Events may be stamped up to a day after the server's clock (clock skew); later is an error."""

EVENT_FIELDS = frozenset(EventIn.model_fields)


@dataclass(frozen=True)
class FieldError:
    """One reason an item was rejected: where (``loc``, field names and list indices) and why."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}

    @property
    def reason(self) -> str:
        """A short, bounded label for metrics: the field, or ``unknown_field``/``body``."""
        if self.type == "payload_too_large":
            return "size"
        if not self.loc:
            return "body"
        head = self.loc[0]
        if isinstance(head, str) and head in EVENT_FIELDS:
            return head
        return "unknown_field" if self.type == "extra_forbidden" else "body"


@dataclass(frozen=True)
class ItemResult:
    """What happened to one item of a call, by its position in the call."""

    index: int
    event_id: str | None
    status: Status
    errors: tuple[FieldError, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event_id": self.event_id,
            "status": self.status,
            "errors": [e.as_dict() for e in self.errors],
        }


def event_day(moment: datetime, zone: Any) -> int:
    """The calendar day of ``moment`` in the business time zone, as days since 1970-01-01
    (the ``day`` the RFM query reads; ``rfmflow score --tz`` counts days the same way)."""
    return moment.astimezone(zone).date().toordinal() - EPOCH_ORDINAL


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def errors_from_validation(err: ValidationError) -> tuple[FieldError, ...]:
    """Pydantic's errors as field errors with readable messages.

    Model-level checks of ``EventIn`` say ``"amount: ..."``; they are moved to their field.
    """
    out: list[FieldError] = []
    for item in err.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(item.get("loc", ()))
        msg = str(item.get("msg", "invalid"))
        kind = str(item.get("type", "value_error"))
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if not loc:
            name, sep, rest = msg.partition(": ")
            if sep and name in EVENT_FIELDS:
                loc, msg = (name,), rest
        elif kind not in ("value_error", "missing", "extra_forbidden") and "input" in item:
            value = item["input"]
            if isinstance(value, str | int | float | bool) or value is None:
                msg = f"{msg} (got {_short(value)})"
        if kind == "extra_forbidden":
            msg = "unknown field"
        out.append(FieldError(loc, msg, kind))
    return tuple(out)


def validate_item(raw: Any) -> EventIn | tuple[FieldError, ...]:
    """One raw JSON item as an :class:`EventIn`, or the reasons it is not one."""
    if not isinstance(raw, dict):
        return (FieldError((), f"an event must be a JSON object, got {type(raw).__name__}", "type_error"),)
    try:
        return EventIn.model_validate(raw)
    except ValidationError as err:
        return errors_from_validation(err)


def raw_event_id(raw: Any) -> str | None:
    """The ``event_id`` of a raw item, if it has a usable one (to name rejected items)."""
    if isinstance(raw, dict):
        value = raw.get("event_id")
        if isinstance(value, str) and value.strip():
            return value.strip()[:128]
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _row(event: EventIn, settings: Settings, received_at: datetime, source: str) -> dict[str, Any]:
    """The ``events`` row of a valid event, or raise ``_Rejected`` with field errors."""
    errors: list[FieldError] = []
    if event.currency is not None and event.currency != settings.currency:
        errors.append(
            FieldError(
                ("currency",),
                f"currency {event.currency} differs from this installation's {settings.currency} "
                "(one currency per installation)",
                "currency_mismatch",
            )
        )
    amount_minor: int | None = None
    try:
        amount_minor = event.amount_minor(settings.money_decimals)
    except ValueError as err:
        errors.append(FieldError(("amount",), str(err).removeprefix("amount: "), "decimal_places"))
    day = event_day(event.occurred_at, settings.zone)
    if not FIRST_DAY <= day <= LAST_DAY:
        errors.append(FieldError(("occurred_at",), "must be between 1900-01-01 and 2199-12-31", "date_range"))
    elif event.occurred_at > received_at + FUTURE_TOLERANCE:
        errors.append(
            FieldError(
                ("occurred_at",),
                f"{event.occurred_at.isoformat()} is more than a day after the server's clock "
                f"({received_at.isoformat(timespec='seconds')})",
                "future",
            )
        )
    if errors:
        raise _Rejected(tuple(errors))
    return {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "event_type": event.type,
        "occurred_at": event.occurred_at,
        "received_at": received_at,
        "day": day,
        "amount_minor": amount_minor,
        "currency": settings.currency if event.type in MONEY_TYPES and amount_minor is not None else None,
        "order_id": event.order_id,
        "properties": event.properties,
        "source": source,
    }


class _Rejected(Exception):
    def __init__(self, errors: tuple[FieldError, ...]) -> None:
        super().__init__(errors)
        self.errors = errors


def customer_deltas(rows: Iterable[dict[str, Any]], new_orders: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """What newly stored events add to each customer's aggregates (one dict per customer).

    A purchase counts once per new order (``new_orders``: pairs first seen now) or, without
    an order id, once on its own; money sums purchases and refunds.
    """
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        cid = row["customer_id"]
        d = out.get(cid)
        if d is None:
            d = out[cid] = {
                "customer_id": cid,
                "first_day": row["day"],
                "last_day": row["day"],
                "last_purchase_day": None,
                "purchases": 0,
                "monetary_minor": 0,
                "n_events": 0,
                **dict.fromkeys(EVENT_COUNT_COLUMNS.values(), 0),
                "created_at": row["received_at"],
                "updated_at": row["received_at"],
            }
        day, kind = row["day"], row["event_type"]
        d["first_day"] = min(d["first_day"], day)
        d["last_day"] = max(d["last_day"], day)
        d["n_events"] += 1
        d[EVENT_COUNT_COLUMNS[kind]] += 1
        if kind == "purchase":
            last = d["last_purchase_day"]
            d["last_purchase_day"] = day if last is None else max(last, day)
            if row["order_id"] is None:
                d["purchases"] += 1
        if kind in MONEY_TYPES and row["amount_minor"] is not None:
            d["monetary_minor"] += row["amount_minor"]
    for cid, _order in new_orders:
        out[cid]["purchases"] += 1
    return list(out.values())


def _drop_erased_properties(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Events of customers whose personal data was erased (``erasures``) keep their type,
    day and amount, not their free-form ``properties``."""
    carrying = {r["customer_id"] for r in rows if r["properties"]}
    if not carrying:
        return
    erased = set(
        conn.execute(sa.select(erasures.c.customer_id).where(erasures.c.customer_id.in_(carrying))).scalars()
    )
    for r in rows:
        if r["customer_id"] in erased:
            r["properties"] = None


def _store(conn: Connection, rows: list[dict[str, Any]], settings: Settings) -> set[str]:
    _drop_erased_properties(conn, rows)
    inserted = insert_new_events(conn, rows)
    stored = [r for r in rows if r["event_id"] in inserted]
    pairs = {
        (r["customer_id"], r["order_id"]) for r in stored if r["event_type"] == "purchase" and r["order_id"]
    }
    new_orders = insert_new_orders(conn, pairs)
    add_to_customers(conn, customer_deltas(stored, new_orders))
    rescore_after_events(conn, settings, stored)  # live scores and segments, same transaction
    return inserted


def ingest(
    target: Engine | Connection,
    events: Sequence[EventIn | tuple[FieldError, ...]],
    settings: Settings,
    *,
    source: str = "api",
    now: datetime | None = None,
    atomic: bool = False,
) -> list[ItemResult]:
    """Store ``events`` and update their customers, all in one transaction; one result per item.

    ``events`` items that are tuples of :class:`FieldError` stand for items that failed
    validation earlier (so results keep the caller's positions); they are answered
    ``rejected``. With an ``Engine`` the transaction is opened here (and retried as a whole
    if PostgreSQL reports a deadlock); with a ``Connection`` the caller's transaction is used.
    """
    received_at = (now or datetime.now(UTC)).astimezone(UTC)
    results: list[ItemResult | None] = [None] * len(events)
    candidates: list[tuple[int, dict[str, Any]]] = []
    first_index: dict[str, int] = {}
    for i, item in enumerate(events):
        if isinstance(item, tuple):
            results[i] = ItemResult(i, None, "rejected", item)
            continue
        try:
            row = _row(item, settings, received_at, source)
        except _Rejected as rej:
            results[i] = ItemResult(i, item.event_id, "rejected", rej.errors)
            continue
        if item.event_id in first_index:  # repeated within this call: the first one counts
            results[i] = ItemResult(i, item.event_id, "duplicate")
            continue
        first_index[item.event_id] = i
        candidates.append((i, row))

    if atomic and any(r is not None and r.status == "rejected" for r in results):
        note = FieldError(
            (), "not written: another item of this all-or-nothing batch was rejected", "skipped"
        )
        return [
            r if r is not None else ItemResult(i, _event_id(events[i]), "skipped", (note,))
            for i, r in enumerate(results)
        ]

    rows = [row for _, row in candidates]
    if isinstance(target, Engine):
        inserted = run_write(target, lambda conn: _store(conn, rows, settings)) if rows else set()
    else:
        inserted = _store(target, rows, settings) if rows else set()
    for i, row in candidates:
        status: Status = "accepted" if row["event_id"] in inserted else "duplicate"
        results[i] = ItemResult(i, row["event_id"], status)
    return [r for r in results if r is not None]


def _event_id(item: EventIn | tuple[FieldError, ...]) -> str | None:
    return None if isinstance(item, tuple) else item.event_id


def ingest_raw(
    target: Engine | Connection,
    items: Sequence[Any],
    settings: Settings,
    *,
    source: str = "api",
    now: datetime | None = None,
    atomic: bool = False,
) -> list[ItemResult]:
    """Validate raw JSON items and :func:`ingest` them; rejected items keep their event id."""
    validated = [validate_item(raw) for raw in items]
    results = ingest(target, validated, settings, source=source, now=now, atomic=atomic)
    return [
        ItemResult(r.index, raw_event_id(items[r.index]), r.status, r.errors) if r.event_id is None else r
        for r in results
    ]


def rebuild_customers(target: Engine | Connection) -> int:
    """Recompute ``customers`` (and the orders per customer) from ``events`` alone.

    The live aggregates are derived data: this gives the same rows, and is the repair for
    any doubt. Returns the number of customers.
    """
    if isinstance(target, Engine):
        return run_write(target, rebuild_derived)
    return rebuild_derived(target)

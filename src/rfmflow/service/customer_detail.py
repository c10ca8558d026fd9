"""One customer, everything the service knows: ``GET /v1/customers/{id}``.

The aggregates (``customers``) stay at the top level as they always were; beside them the
profile (``customer_profiles``, null when none), the current scores and segment
(``customer_scores``), the tags (``customer_tags``, with kind and who added them), the segment
history (moves, newest first) and the latest events (newest first).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.service.db.store import read_customer
from rfmflow.service.db.tables import customer_scores, customer_tags, events
from rfmflow.service.ingest import EPOCH_ORDINAL
from rfmflow.service.predictions import customer_prediction
from rfmflow.service.profiles import read_profile
from rfmflow.service.scoring import score_out, segment_history, segment_on
from rfmflow.service.settings import Settings

MAX_EVENTS = 200
HISTORY_LIMIT = 100


def _money(minor: int, settings: Settings) -> str:
    return format(Decimal(int(minor)).scaleb(-settings.money_decimals), "f")


def aggregates_out(row: Mapping[str, Any] | None, settings: Settings) -> dict[str, Any]:
    """The ``customers`` row for the API; a customer without events (a profile only) has
    empty dates and zero counts."""

    def day_text(day: int | None) -> str | None:
        return None if day is None else date.fromordinal(day + EPOCH_ORDINAL).isoformat()

    if row is None:
        return {
            "first_event_date": None,
            "last_event_date": None,
            "last_purchase_date": None,
            "purchases": 0,
            "monetary": _money(0, settings),
            "monetary_minor": 0,
            "currency": settings.currency,
            "events": 0,
            "event_counts": {},
            "created_at": None,
            "updated_at": None,
        }
    counts = {k.removeprefix("n_"): v for k, v in row.items() if k.startswith("n_") and k != "n_events"}
    return {
        "first_event_date": day_text(row["first_day"]),
        "last_event_date": day_text(row["last_day"]),
        "last_purchase_date": day_text(row["last_purchase_day"]),
        "purchases": row["purchases"],
        "monetary": _money(row["monetary_minor"], settings),
        "monetary_minor": row["monetary_minor"],
        "currency": settings.currency,
        "events": row["n_events"],
        "event_counts": counts,
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def customer_tag_rows(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    ct = customer_tags.c
    rows = conn.execute(
        sa.select(ct.tag, ct.kind, ct.added_at, ct.added_by)
        .where(ct.customer_id == customer_id)
        .order_by(ct.tag)
    ).all()
    return [
        {"tag": r.tag, "kind": r.kind, "added_at": r.added_at.isoformat(), "added_by": r.added_by}
        for r in rows
    ]


def recent_events(
    conn: Connection, customer_id: str, settings: Settings, *, limit: int
) -> list[dict[str, Any]]:
    """The customer's latest ``limit`` events, newest first (by occurrence)."""
    e = events.c
    rows = conn.execute(
        sa.select(
            e.event_id,
            e.event_type,
            e.occurred_at,
            e.received_at,
            e.amount_minor,
            e.currency,
            e.order_id,
            e.source,
            e.properties,
        )
        .where(e.customer_id == customer_id)
        .order_by(e.day.desc(), e.occurred_at.desc(), e.event_id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "event_id": r.event_id,
            "type": r.event_type,
            "occurred_at": r.occurred_at.isoformat(),
            "received_at": r.received_at.isoformat(),
            "amount": None if r.amount_minor is None else _money(r.amount_minor, settings),
            "currency": r.currency,
            "order_id": r.order_id,
            "source": r.source,
            "properties": r.properties,
        }
        for r in rows
    ]


def customer_detail(
    conn: Connection, settings: Settings, customer_id: str, *, events_limit: int = 20
) -> dict[str, Any] | None:
    """Everything about one customer; None when the service knows nothing of them (no
    events, no profile, no scores)."""
    row = read_customer(conn, customer_id)
    profile = read_profile(conn, customer_id)
    scores = (
        conn.execute(sa.select(customer_scores).where(customer_scores.c.customer_id == customer_id))
        .mappings()
        .first()
    )
    history = segment_history(conn, customer_id, limit=HISTORY_LIMIT)
    if row is None and profile is None and scores is None and not history:
        return None
    scored = score_out(dict(scores), settings) if scores is not None else None
    return {
        "customer_id": customer_id,
        **aggregates_out(row, settings),
        "segment": scored["segment"] if scored else None,
        "profile": profile,
        "scores": scored,
        "tags": customer_tag_rows(conn, customer_id),
        "segment_history": history,
        "predictions": customer_prediction(conn, customer_id, settings),
        "recent_events": recent_events(conn, customer_id, settings, limit=events_limit)
        if row is not None
        else [],
    }


def segment_on_day(conn: Connection, customer_id: str, day: int) -> tuple[bool, str | None]:
    """Whether the service knows the customer, and their segment on ``day`` (None: not scored
    by then)."""
    segment = segment_on(conn, customer_id, day)
    if segment is not None:
        return True, segment
    known = read_customer(conn, customer_id) is not None or read_profile(conn, customer_id) is not None
    return known, None


__all__ = [
    "MAX_EVENTS",
    "aggregates_out",
    "customer_detail",
    "customer_tag_rows",
    "recent_events",
    "segment_on_day",
]

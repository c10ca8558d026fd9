"""A customer's personal data: everything held about them (export), and erasure on request.

**Export** (:func:`personal_data`): the profile and its traits, the customer's aggregates,
scores, predictions and segment history, tags and their history, consent and its history,
every event, every message in the outbox, the workflow journeys and their steps, the hand-off
tasks, and the erasure record if there is one — as JSON-ready values.

**Erasure** (:func:`erase`, in one transaction) removes what identifies or describes the
person and keeps what the business's numbers are made of:

==============================  =====================================  ==========================
table                           removed                                kept
==============================  =====================================  ==========================
``customer_profiles``           traits, email, phone, name, time zone,  the row (source
                                language, Telegram chat id             ``erased``)
``events``                      ``properties``                         type, time, day, amount,
                                                                       currency, order id
``outbox``                      the message (subject, text, buttons,   channel, status, times,
                                payload) and the recipient address     workflow, step, segment
``tasks``                       the note                               queue, priority, status
``customers``, scores,          nothing                                all (aggregate counts,
segments, tags, journeys                                               segment counts)
==============================  =====================================  ==========================

and the customer is opted out of every channel (reason ``erased``), so nothing is sent to
them again, and an ``erasures`` row records who erased them when and what was removed. Later
profile updates for an erased customer (Segment ``identify``, the API, the bot) store no
personal data: :func:`rfmflow.service.profiles.upsert_profile` reads ``erasures`` first.
Erasing again is harmless (it scrubs whatever arrived since) and keeps the first record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.automation.consent import CHANNELS, set_consent
from rfmflow.core.errors import RfmflowError
from rfmflow.service.db.tables import (
    audit_log,
    consent_changes,
    consents,
    customer_predictions,
    customer_profiles,
    customer_scores,
    customer_tags,
    customers,
    enrolments,
    erasures,
    events,
    journey_steps,
    outbox,
    segment_transitions,
    tag_changes,
    tasks,
)

ERASED_SOURCE = "erased"


class CustomerNotFound(RfmflowError):
    """No customer (no events and no profile) with that id."""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [_plain(dict(r)) for r in conn.execute(query).mappings()]


def _one(conn: Connection, query: Any) -> dict[str, Any] | None:
    found = _rows(conn, query)
    return found[0] if found else None


def known(conn: Connection, customer_id: str) -> bool:
    """Whether the service holds anything under ``customer_id`` (events or a profile)."""
    for table in (customers, customer_profiles):
        if conn.execute(sa.select(table.c.customer_id).where(table.c.customer_id == customer_id)).first():
            return True
    return False


def personal_data(conn: Connection, customer_id: str) -> dict[str, Any]:
    """Everything held about the customer (raises :class:`CustomerNotFound`)."""
    if not known(conn, customer_id):
        raise CustomerNotFound(f"no customer {customer_id!r}")
    cid = customer_id

    def where(table: sa.Table) -> Any:
        return table.c.customer_id == cid

    journeys = _rows(conn, sa.select(enrolments).where(where(enrolments)).order_by(enrolments.c.id))
    ids = [j["id"] for j in journeys]
    steps = (
        _rows(
            conn,
            sa.select(journey_steps)
            .where(journey_steps.c.enrolment_id.in_(ids))
            .order_by(journey_steps.c.id),
        )
        if ids
        else []
    )
    return {
        "customer_id": cid,
        "erasure": _one(conn, sa.select(erasures).where(where(erasures))),
        "profile": _one(conn, sa.select(customer_profiles).where(where(customer_profiles))),
        "aggregates": _one(conn, sa.select(customers).where(where(customers))),
        "scores": _one(conn, sa.select(customer_scores).where(where(customer_scores))),
        "predictions": _one(conn, sa.select(customer_predictions).where(where(customer_predictions))),
        "segment_history": _rows(
            conn,
            sa.select(segment_transitions)
            .where(where(segment_transitions))
            .order_by(segment_transitions.c.at, segment_transitions.c.id),
        ),
        "tags": _rows(
            conn, sa.select(customer_tags).where(where(customer_tags)).order_by(customer_tags.c.tag)
        ),
        "tag_history": _rows(
            conn,
            sa.select(tag_changes).where(where(tag_changes)).order_by(tag_changes.c.at, tag_changes.c.id),
        ),
        "consent": _rows(conn, sa.select(consents).where(where(consents)).order_by(consents.c.channel)),
        "consent_history": _rows(
            conn,
            sa.select(consent_changes)
            .where(where(consent_changes))
            .order_by(consent_changes.c.at, consent_changes.c.id),
        ),
        "events": _rows(
            conn, sa.select(events).where(where(events)).order_by(events.c.occurred_at, events.c.event_id)
        ),
        "messages": _rows(conn, sa.select(outbox).where(where(outbox)).order_by(outbox.c.id)),
        "journeys": journeys,
        "journey_steps": steps,
        "tasks": _rows(conn, sa.select(tasks).where(where(tasks)).order_by(tasks.c.id)),
    }


def is_erased(conn: Connection, customer_id: str) -> bool:
    found = conn.execute(sa.select(erasures.c.customer_id).where(erasures.c.customer_id == customer_id))
    return found.first() is not None


def erase(conn: Connection, customer_id: str, *, actor: str, at: datetime) -> dict[str, Any]:
    """Erase the customer's personal data (see the module's table); what was removed."""
    if not known(conn, customer_id):
        raise CustomerNotFound(f"no customer {customer_id!r}")
    cid = customer_id
    p = customer_profiles.c
    profile = conn.execute(
        sa.update(customer_profiles)
        .where(p.customer_id == cid)
        .values(
            traits={},
            email=None,
            phone=None,
            name=None,
            timezone=None,
            language=None,
            telegram_chat_id=None,
            updated_at=at,
            source=ERASED_SOURCE,
        )
    ).rowcount
    ev = events.c
    event_rows = conn.execute(
        sa.update(events)
        .where(ev.customer_id == cid, ev.properties.is_not(None))
        .values(properties=sa.null())
    ).rowcount
    o = outbox.c
    messages = conn.execute(
        sa.update(outbox).where(o.customer_id == cid).values(message={"erased": True}, recipient=None)
    ).rowcount
    t = tasks.c
    notes = conn.execute(sa.update(tasks).where(t.customer_id == cid).values(note="")).rowcount
    opted_out = [
        channel
        for channel in CHANNELS
        if set_consent(conn, cid, channel, "opted_out", "erased", actor=actor, at=at)
    ]
    summary = {
        "removed": {
            "profile": bool(profile),
            "event_properties": int(event_rows or 0),
            "messages": int(messages or 0),
            "task_notes": int(notes or 0),
        },
        "opted_out": opted_out,
        "kept": [
            "customers",
            "customer_scores",
            "segment_transitions",
            "customer_tags",
            "events (no properties)",
        ],
    }
    first = not is_erased(conn, cid)
    if first:
        conn.execute(sa.insert(erasures).values(customer_id=cid, erased_at=at, actor=actor, summary=summary))
    return {"customer_id": cid, "erased_at": at.isoformat(), "first_erasure": first, **summary}


def erase_with_audit(conn: Connection, customer_id: str, actor: str, at: datetime) -> dict[str, Any]:
    """:func:`erase` and its ``audit_log`` row (``customer.erase``), in the caller's transaction."""
    done = erase(conn, customer_id, actor=actor, at=at)
    conn.execute(
        sa.insert(audit_log).values(
            at=at, actor=actor, action="customer.erase", target=customer_id, details=done["removed"]
        )
    )
    return done


__all__ = ["CustomerNotFound", "erase", "erase_with_audit", "is_erased", "known", "personal_data"]

"""Consent per customer and channel: who may be sent what, and why not.

A customer with no consent row for a channel may be sent messages on it (they gave an address
or started the bot); an ``opted_out`` row stops every send on that channel until an
``opted_in`` one replaces it. Every change is kept in ``consent_changes`` with its reason:

- ``requested``: the customer asked to receive (an opt-in form, ``/start`` after ``/stop``);
- ``unsubscribed``: the e-mail's unsubscribe link or header;
- ``stop``: the bot's ``/stop`` command;
- ``blocked`` / ``unblocked``: the customer blocked or unblocked the bot (Telegram's
  ``my_chat_member`` or a 403 answer);
- ``bounced``: the address refused the mail permanently;
- ``manual``: a person changed it (API, dashboard);
- ``erased``: the customer's data was erased on request (GDPR).

Functions take the caller's connection: the change commits with whatever decided it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.service.db.tables import CONSENT_REASONS, CONSENT_STATUSES, consent_changes, consents

CHANNELS = ("telegram", "email", "webhook")
OPT_OUT_REASONS = frozenset({"unsubscribed", "stop", "blocked", "bounced", "manual", "erased"})
OPT_IN_REASONS = frozenset({"requested", "unblocked", "manual"})


class ConsentError(ValueError):
    """An impossible consent change (unknown channel, status or reason)."""


@dataclass(frozen=True)
class Consent:
    customer_id: str
    channel: str
    status: str  # opted_in, opted_out, or "default" (no row: may be sent to)
    reason: str | None
    updated_at: datetime | None
    actor: str | None

    @property
    def may_send(self) -> bool:
        return self.status != "opted_out"

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "status": self.status,
            "may_send": self.may_send,
            "reason": self.reason,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "actor": self.actor,
        }


def _check(channel: str, status: str, reason: str) -> None:
    if channel not in CHANNELS:
        raise ConsentError(f"channel: expected one of {', '.join(CHANNELS)}, got {channel!r}")
    if status not in CONSENT_STATUSES:
        raise ConsentError(f"status: expected one of {', '.join(CONSENT_STATUSES)}, got {status!r}")
    if reason not in CONSENT_REASONS:
        raise ConsentError(f"reason: expected one of {', '.join(CONSENT_REASONS)}, got {reason!r}")
    allowed = OPT_OUT_REASONS if status == "opted_out" else OPT_IN_REASONS
    if reason not in allowed:
        raise ConsentError(
            f"reason: {reason!r} does not go with {status} (use one of {', '.join(sorted(allowed))})"
        )


def set_consent(
    conn: Connection, customer_id: str, channel: str, status: str, reason: str, *, actor: str, at: datetime
) -> bool:
    """Record a consent change; whether it changed anything (the same status again is no change)."""
    _check(channel, status, reason)
    c = consents.c
    current = conn.execute(
        sa.select(c.status).where(c.customer_id == customer_id, c.channel == channel)
    ).scalar_one_or_none()
    if current == status:
        return False
    values = {"status": status, "reason": reason, "updated_at": at, "actor": actor}
    if current is None:
        conn.execute(sa.insert(consents).values(customer_id=customer_id, channel=channel, **values))
    else:
        conn.execute(
            sa.update(consents).where(c.customer_id == customer_id, c.channel == channel).values(**values)
        )
    conn.execute(
        sa.insert(consent_changes).values(
            customer_id=customer_id, channel=channel, status=status, reason=reason, at=at, actor=actor
        )
    )
    return True


def consent_of(conn: Connection, customer_id: str, channels: Iterable[str] = CHANNELS) -> list[Consent]:
    """The customer's consent on each of ``channels`` (``default`` where nothing was recorded)."""
    c = consents.c
    rows = {r.channel: r for r in conn.execute(sa.select(consents).where(c.customer_id == customer_id)).all()}
    out = []
    for channel in channels:
        row = rows.get(channel)
        if row is None:
            out.append(Consent(customer_id, channel, "default", None, None, None))
        else:
            out.append(Consent(customer_id, channel, row.status, row.reason, row.updated_at, row.actor))
    return out


def opted_out(conn: Connection, customer_ids: Iterable[str], channel: str) -> set[str]:
    """Which of ``customer_ids`` may not be sent to on ``channel`` (for a batch of sends)."""
    ids = list(customer_ids)
    if not ids:
        return set()
    c = consents.c
    found: set[str] = set()
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        query = sa.select(c.customer_id).where(
            c.channel == channel, c.status == "opted_out", c.customer_id.in_(chunk)
        )
        found.update(conn.execute(query).scalars())
    return found


def history(conn: Connection, customer_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The customer's consent changes, newest first."""
    h = consent_changes.c
    rows = conn.execute(
        sa.select(consent_changes)
        .where(h.customer_id == customer_id)
        .order_by(h.at.desc(), h.id.desc())
        .limit(limit)
    ).mappings()
    return [
        {
            "channel": r["channel"],
            "status": r["status"],
            "reason": r["reason"],
            "at": r["at"].isoformat(),
            "actor": r["actor"],
        }
        for r in rows
    ]


__all__ = ["CHANNELS", "Consent", "ConsentError", "consent_of", "history", "opted_out", "set_consent"]

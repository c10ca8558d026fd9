"""What may be sent, and when: consent, quiet hours and frequency caps.

Shared by the outbox dispatcher (every row, just before it is sent) and broadcasts (the
audience preview and the rows they write). Each check takes the caller's connection and a
batch of customers, so a preview of 100,000 customers is a few queries, not 100,000.

- **Consent**: :func:`blocked_by_consent` — customers opted out of the channel
  (:mod:`rfmflow.automation.consent`).
- **Quiet hours**: :func:`quiet_until` — the end of the quiet period when ``now`` falls in it in
  the customer's time zone (their profile's, else the business zone), otherwise ``None``.
- **Frequency caps**: :func:`over_cap` — customers who already had the cap's number of
  messages on the channel within its window (rows ``delivered``, ``sending`` or ``unknown``:
  a message that may have gone counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.automation.consent import opted_out
from rfmflow.automation.settings import Cap, QuietHours
from rfmflow.service.db.tables import outbox

COUNTED_STATUSES = ("delivered", "sending", "unknown")
"""Outbox rows that count against a cap (sent, or may have been)."""


def blocked_by_consent(conn: Connection, customer_ids: Iterable[str], channel: str) -> set[str]:
    """Customers of ``customer_ids`` who may not be sent to on ``channel``."""
    return opted_out(conn, customer_ids, channel)


def _zone(name: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


def quiet_until(
    quiet: QuietHours | None, now: datetime, timezone: str | None, business_zone: str
) -> datetime | None:
    """When the quiet period ``now`` falls in ends (UTC), or ``None`` when it is not quiet now."""
    if quiet is None:
        return None
    zone = _zone(timezone, business_zone)
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    start, end = quiet.start, quiet.end
    in_quiet = (start <= t < end) if start < end else (t >= start or t < end)
    if not in_quiet:
        return None
    end_day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(now.tzinfo)


def caps_for(caps: Iterable[Cap], channel: str, segment: str | None) -> list[Cap]:
    """The caps that apply to a customer in ``segment`` on ``channel``."""
    return [c for c in caps if c.channel == channel and (c.segment is None or c.segment == segment)]


def over_cap(
    conn: Connection,
    caps: Iterable[Cap],
    channel: str,
    segments: Mapping[str, str | None],
    now: datetime,
) -> dict[str, datetime]:
    """Customers (keys of ``segments``: customer -> segment) at a cap, each with when the
    earliest counted message leaves the window (when a deferred row may try again)."""
    found: dict[str, datetime] = {}
    ids = list(segments)
    o = outbox.c
    for cap in [c for c in caps if c.channel == channel]:
        subject = [i for i in ids if cap.segment is None or segments[i] == cap.segment]
        for start in range(0, len(subject), 1000):
            chunk = subject[start : start + 1000]
            since = now - cap.window
            query = (
                sa.select(o.customer_id, sa.func.count(), sa.func.min(o.sent_at))
                .where(
                    o.channel == channel,
                    o.customer_id.in_(chunk),
                    o.status.in_(COUNTED_STATUSES),
                    o.sent_at >= since,
                )
                .group_by(o.customer_id)
            )
            for customer_id, count, first in conn.execute(query):
                if count >= cap.limit:
                    first_at = first if first.tzinfo else first.replace(tzinfo=now.tzinfo)
                    again = first_at + cap.window
                    found[customer_id] = max(found.get(customer_id, again), again)
    return found


__all__ = ["COUNTED_STATUSES", "blocked_by_consent", "caps_for", "over_cap", "quiet_until"]

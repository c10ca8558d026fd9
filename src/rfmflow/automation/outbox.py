"""The outbox dispatcher: sends what the engine decided, at most once, and records the outcome.

One pass (:func:`dispatch_once`):

1. **Recover**: a row left in ``sending`` whose lease (``locked_until``) expired belongs to a
   worker that died mid-send: it may or may not have gone, so it becomes ``unknown`` and is
   never resent blindly.
2. **Claim** (one transaction): ``pending`` rows due (``not_before <= now``) — on PostgreSQL
   ``FOR UPDATE SKIP LOCKED``, so two workers never claim the same row. Each is checked:
   a row of a *stopped* broadcast becomes ``cancelled``, of a *paused* one stays pending;
   an opted-out customer → ``skipped`` (with the reason); no address (chat id, e-mail, webhook
   URL) → the step's ``fallback`` channel if it can reach them, else ``skipped``; quiet hours
   in the customer's zone → stays pending until they end; a frequency cap → ``skipped`` or
   deferred past the window by the row's ``message.cap_policy`` (workflows: ``defer``); a
   channel with no sender configured stays pending. The rest are marked ``sending`` (lease,
   attempt, recipient, ``sent_at`` = the attempt) and the transaction COMMITS before anything
   is sent.
3. **Send** and record each outcome as it comes (its own transaction): ``delivered``;
   ``blocked`` (and the customer's consent on that channel becomes ``opted_out/blocked``);
   ``failed`` (a bounce: ``opted_out/bounced``); ``deferred`` → back to ``pending`` with
   ``not_before = retry_at``; ``unknown``. An outcome only lands on a row still ``sending``
   under this worker's lease.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from rfmflow.automation.consent import set_consent
from rfmflow.automation.policies import blocked_by_consent, caps_for, over_cap, quiet_until
from rfmflow.automation.senders import ChannelSenders
from rfmflow.automation.settings import AutomationSettings
from rfmflow.channels.outbound import SendOutcome
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import broadcasts, customer_profiles, outbox

BATCH = 200
UNCONFIGURED_RETRY = timedelta(minutes=1)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Claimed:
    id: int
    customer_id: str
    channel: str
    recipient: str
    message: dict[str, Any]


@dataclass
class DispatchStats:
    claimed: int = 0
    examined: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unknown_recovered: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "outcomes": dict(self.outcomes),
            "unknown_recovered": self.unknown_recovered,
        }


def recover_expired(conn: Connection, now: datetime) -> int:
    """Rows left ``sending`` past their lease become ``unknown`` (never resent blindly)."""
    o = outbox.c
    done = conn.execute(
        sa.update(outbox)
        .where(o.status == "sending", o.locked_until < now)
        .values(
            status="unknown",
            reason="the worker stopped while sending it: it may have been sent, so it is not sent again",
            locked_by=None,
            locked_until=None,
        )
    ).rowcount
    return int(done or 0)


def _address(channel: str, profile: Any, settings: AutomationSettings) -> str | None:
    if channel == "telegram":
        return (
            str(profile.telegram_chat_id)
            if profile is not None and profile.telegram_chat_id is not None
            else None
        )
    if channel == "email":
        return profile.email if profile is not None and profile.email else None
    return settings.webhook_url or None


def claim(
    conn: Connection,
    now: datetime,
    settings: AutomationSettings,
    available: set[str],
    *,
    worker: str,
    business_zone: str,
    limit: int = BATCH,
) -> tuple[list[Claimed], int]:
    """Check and claim due pending rows (the caller's transaction, committed before sending);
    the rows to send and how many due rows were looked at."""
    o = outbox.c
    query = (
        sa.select(outbox)
        .where(
            o.status == "pending",
            o.not_before <= now,
            sa.or_(
                o.broadcast_id.is_(None),
                o.broadcast_id.not_in(sa.select(broadcasts.c.id).where(broadcasts.c.status == "paused")),
            ),
        )
        .order_by(o.not_before, o.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(conn.execute(query))
    if not rows:
        return [], 0
    ids = sorted({r.customer_id for r in rows})
    profiles = {
        p.customer_id: p
        for p in conn.execute(sa.select(customer_profiles).where(customer_profiles.c.customer_id.in_(ids)))
    }
    paused: set[int] = set()
    stopped: set[int] = set()
    bids = {r.broadcast_id for r in rows if r.broadcast_id is not None}
    if bids:
        for bid, status in conn.execute(
            sa.select(broadcasts.c.id, broadcasts.c.status).where(broadcasts.c.id.in_(bids))
        ):
            if status == "stopped":
                stopped.add(bid)
            elif status == "paused":
                paused.add(bid)
    opted: dict[str, set[str]] = {}
    wanted: set[str] = {str(r.channel) for r in rows}
    wanted |= {
        str(r.message["fallback"]) for r in rows if isinstance(r.message, dict) and r.message.get("fallback")
    }
    for channel in wanted:
        opted[channel] = blocked_by_consent(conn, ids, channel)
    capped: dict[str, dict[str, datetime]] = {}
    planned: dict[tuple[str, str], int] = defaultdict(int)
    claimed: list[Claimed] = []
    sending: list[dict[str, Any]] = []
    for r in rows:
        message = dict(r.message or {})
        changes: dict[str, Any]
        if r.broadcast_id in stopped:
            changes = {"status": "cancelled", "reason": "the broadcast was stopped"}
            conn.execute(sa.update(outbox).where(o.id == r.id).values(**changes))
            continue
        if r.broadcast_id in paused:
            continue
        profile = profiles.get(r.customer_id)
        channel = r.channel
        reason = None
        address = None
        for candidate in [channel, message.get("fallback")]:
            if not candidate:
                continue
            if r.customer_id in opted.get(candidate, set()):
                reason = reason or f"the customer opted out of {candidate}"
                continue
            address = _address(candidate, profile, settings)
            if address is None:
                reason = reason or f"no {candidate} address for the customer ({_what(candidate)})"
                continue
            channel = candidate
            break
        if address is None:
            conn.execute(sa.update(outbox).where(o.id == r.id).values(status="skipped", reason=reason))
            continue
        if channel not in available:
            conn.execute(
                sa.update(outbox)
                .where(o.id == r.id)
                .values(
                    not_before=now + UNCONFIGURED_RETRY, reason=f"the {channel} channel is not configured"
                )
            )
            continue
        quiet = quiet_until(
            settings.quiet_hours, now, profile.timezone if profile is not None else None, business_zone
        )
        if quiet is not None:
            conn.execute(
                sa.update(outbox)
                .where(o.id == r.id)
                .values(
                    not_before=quiet, reason=f"quiet hours ({settings.quiet_hours}) in the customer's zone"
                )
            )
            continue
        applicable = caps_for(settings.caps, channel, r.segment)
        if applicable:
            if channel not in capped:
                segs = {x.customer_id: x.segment for x in rows}
                capped[channel] = over_cap(conn, settings.caps, channel, segs, now)
            limit_hit = capped[channel].get(r.customer_id)
            tightest = min(c.limit for c in applicable)
            if limit_hit is None and planned[(r.customer_id, channel)] >= tightest:
                limit_hit = now + min(c.window for c in applicable)
            if limit_hit is not None:
                if message.get("cap_policy", "defer") == "skip":
                    conn.execute(
                        sa.update(outbox)
                        .where(o.id == r.id)
                        .values(status="skipped", reason="frequency cap reached")
                    )
                else:
                    conn.execute(
                        sa.update(outbox)
                        .where(o.id == r.id)
                        .values(not_before=limit_hit, reason="frequency cap reached: deferred")
                    )
                continue
        planned[(r.customer_id, channel)] += 1
        sending.append(
            {"b_id": r.id, "b_channel": channel, "b_recipient": address, "b_attempts": r.attempts + 1}
        )
        claimed.append(Claimed(r.id, r.customer_id, channel, address, message))
    if sending:
        conn.execute(
            sa.update(outbox)
            .where(o.id == sa.bindparam("b_id"))
            .values(
                status="sending",
                channel=sa.bindparam("b_channel"),
                recipient=sa.bindparam("b_recipient"),
                attempts=sa.bindparam("b_attempts"),
                locked_by=worker,
                locked_until=now + settings.send_lease,
                sent_at=now,
                reason=None,
            ),
            sending,
        )
    return claimed, len(rows)


def _what(channel: str) -> str:
    return {
        "telegram": "no telegram_chat_id in the profile",
        "email": "no email in the profile",
        "webhook": "RFMFLOW_AUTOMATION_WEBHOOK_URL is not set",
    }.get(channel, channel)


def record(
    conn: Connection, item: Claimed, outcome: SendOutcome, worker: str, now: datetime, claimed_at: datetime
) -> str:
    """Write one send's outcome on its row (only while this worker still holds it). A deferral
    waits at least a second past the pass that claimed it, so one pass never spins on it."""
    o = outbox.c
    values: dict[str, Any] = {"locked_by": None, "locked_until": None, "reason": outcome.reason}
    status: str = outcome.status
    if status == "delivered":
        values.update(sent_at=outcome.sent_at or now, provider_id=outcome.provider_message_id)
    elif status == "deferred":
        status = "pending"
        values["not_before"] = max(
            outcome.retry_at or now + UNCONFIGURED_RETRY, claimed_at + timedelta(seconds=1)
        )
    elif status == "duplicate":
        status = "unknown"
    values["status"] = status
    done = conn.execute(
        sa.update(outbox)
        .where(o.id == item.id, o.status == "sending", o.locked_by == worker)
        .values(**values)
    ).rowcount
    if not done:
        return "lost-lease"
    if status == "blocked":
        set_consent(conn, item.customer_id, item.channel, "opted_out", "blocked", actor="automation", at=now)
    elif status == "failed" and outcome.details.get("bounced"):
        set_consent(conn, item.customer_id, item.channel, "opted_out", "bounced", actor="automation", at=now)
    return status


def record_many(
    conn: Connection,
    done: Sequence[tuple[Claimed, SendOutcome, datetime]],
    worker: str,
    claimed_at: datetime,
) -> list[str]:
    """:func:`record` for several outcomes in one transaction; the deliveries in one statement."""
    o = outbox.c
    delivered = [(item, outcome, at) for item, outcome, at in done if outcome.status == "delivered"]
    statuses: list[str] = []
    if delivered:
        matched = conn.execute(
            sa.update(outbox)
            .where(o.id == sa.bindparam("b_id"), o.status == "sending", o.locked_by == worker)
            .values(
                status="delivered",
                sent_at=sa.bindparam("b_sent_at"),
                provider_id=sa.bindparam("b_provider_id"),
                reason=sa.bindparam("b_reason"),
                locked_by=None,
                locked_until=None,
            ),
            [
                {
                    "b_id": item.id,
                    "b_sent_at": outcome.sent_at or at,
                    "b_provider_id": outcome.provider_message_id,
                    "b_reason": outcome.reason,
                }
                for item, outcome, at in delivered
            ],
        ).rowcount
        took = len(delivered) if matched is None or matched < 0 else int(matched)
        statuses += ["delivered"] * took + ["lost-lease"] * (len(delivered) - took)
    statuses += [
        record(conn, item, outcome, worker, at, claimed_at)
        for item, outcome, at in done
        if outcome.status != "delivered"
    ]
    return statuses


class _Recorder:
    """Writes outcomes as they come back: one transaction when they trickle in, many outcomes per
    transaction when they come faster than a commit (a crash before the write leaves the row
    ``sending``, and it becomes ``unknown``: never resent)."""

    def __init__(self, engine: Engine, worker: str, claimed_at: datetime, stats: DispatchStats) -> None:
        self.engine = engine
        self.worker = worker
        self.claimed_at = claimed_at
        self.stats = stats
        self.waiting: list[tuple[Claimed, SendOutcome, datetime]] = []
        self.writing: asyncio.Task[None] | None = None

    def add(self, item: Claimed, outcome: SendOutcome) -> None:
        self.waiting.append((item, outcome, datetime.now(UTC)))
        if self.writing is None or self.writing.done():
            self.writing = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        while self.waiting:
            taken, self.waiting = self.waiting, []
            statuses = await asyncio.to_thread(
                run_write,
                self.engine,
                lambda c, taken=taken: record_many(c, taken, self.worker, self.claimed_at),
            )
            for status in statuses:
                self.stats.outcomes[status] += 1

    async def close(self) -> None:
        while self.writing is not None and not self.writing.done():
            await self.writing
        if self.writing is not None:
            self.writing.result()  # a failed write is raised here


async def dispatch_once(
    engine: Engine,
    senders: ChannelSenders,
    settings: AutomationSettings,
    *,
    now: datetime | None = None,
    worker: str | None = None,
    business_zone: str = "UTC",
    limit: int = BATCH,
) -> DispatchStats:
    """Recover, claim one batch, send it, record the outcomes."""
    worker = worker or worker_id()
    at = now or datetime.now(UTC)
    stats = DispatchStats()
    stats.unknown_recovered = await asyncio.to_thread(run_write, engine, lambda c: recover_expired(c, at))
    claimed, stats.examined = await asyncio.to_thread(
        run_write,
        engine,
        lambda c: claim(
            c, at, settings, senders.channels, worker=worker, business_zone=business_zone, limit=limit
        ),
    )
    stats.claimed = len(claimed)

    recorder = _Recorder(engine, worker, at, stats)

    async def one(item: Claimed) -> None:
        try:
            outcome = await senders.send(item.channel, str(item.id), item.recipient, item.message)
        except Exception as err:  # the sender broke: it may have sent; never resend blindly
            outcome = SendOutcome(str(item.id), "unknown", reason=f"the sender failed: {err}")
        recorder.add(item, outcome)

    await asyncio.gather(*(one(item) for item in claimed))
    await recorder.close()
    return stats


async def dispatch_all(
    engine: Engine,
    senders: ChannelSenders,
    settings: AutomationSettings,
    *,
    now: datetime | None = None,
    business_zone: str = "UTC",
    limit: int = BATCH,
    stopping: Callable[[], bool] | None = None,
) -> DispatchStats:
    """Dispatch batches until nothing due is left to claim (or ``stopping()`` says so between two
    batches)."""
    total = DispatchStats()
    while not (stopping is not None and stopping()):
        stats = await dispatch_once(
            engine, senders, settings, now=now, business_zone=business_zone, limit=limit
        )
        total.claimed += stats.claimed
        total.unknown_recovered += stats.unknown_recovered
        for k, v in stats.outcomes.items():
            total.outcomes[k] += v
        if stats.examined == 0:
            break
    return total


__all__ = [
    "BATCH",
    "Claimed",
    "DispatchStats",
    "claim",
    "dispatch_all",
    "dispatch_once",
    "record",
    "record_many",
    "recover_expired",
    "worker_id",
]

"""Broadcasts: one message to an audience chosen by segment, tags and the customer list's filters.

A broadcast is created as a ``draft`` with its channel, its message (checked as a workflow's send
step is: the sandboxed templates may use only customer fields and the broadcast's ``vars``), its
audience (the filters of ``GET /v1/customers``, :class:`Audience`), an optional schedule and a
cap policy (``skip`` or ``defer`` when a frequency cap is reached: the dispatcher applies it).

:func:`preview` counts the audience before anything is written: how many customers match, how
many of them opted out of the channel and how many have no address on it. :func:`start` takes the
audience at that moment and writes one outbox row per customer, in batches, each batch in its
own transaction; a row's ``dedupe_key`` is ``bc:<id>:<customer>``, so a start that is retried
(after a crash, or twice) writes every row once. Customers who opted out or have no address
get a ``skipped`` row with the reason, so the broadcast accounts for everyone it was meant
for. Above ``settings.broadcast_confirm_above`` customers a start must repeat the count it was
shown (``confirm_count``); an audience that moved more than
``settings.broadcast_confirm_tolerance`` from it is refused (:class:`ConfirmationNeeded`).

The dispatcher (not this module) sends pending rows whose ``not_before`` has come; it waits on
rows of a ``paused`` broadcast and cancels rows of a ``stopped`` one. :func:`stop` is the kill
switch: it marks the broadcast ``stopped`` and cancels every row still ``pending`` or
``deferred`` in one statement, in the same transaction; a row already ``sending`` finishes.
The broadcast's row is locked first by every writer (start's batches, pause, resume, stop), so
a stop and a batch being written never interleave.

Statuses: ``draft`` -> ``scheduled`` (started, its time has not come) or ``running`` ->
``paused`` <-> back, -> ``stopped`` (at any time before ``done``), -> ``done`` (started and no
row is left to send: :func:`settle`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from rfmflow.automation.definition import (
    TEMPLATE_FIELDS,
    Message,
    WorkflowError,
    compile_template,
    read_message,
)
from rfmflow.automation.links import UNSUBSCRIBE_MARK
from rfmflow.core.errors import RfmflowError
from rfmflow.service.customer_search import Bounds, CustomerFilter, conditions, money_scheme
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import (
    audit_log,
    broadcasts,
    consents,
    customer_profiles,
    customer_scores,
    customer_tags,
    outbox,
)
from rfmflow.service.settings import Settings

CapPolicy = Literal["skip", "defer"]
OPEN_ROWS = ("pending", "deferred")
"""Outbox statuses a stop cancels (a ``sending`` row is with the channel already)."""
LIVE = ("scheduled", "running", "paused")
"""Statuses of a started broadcast that can still send."""
BATCH = 500
MAX_NAME = 200


class BroadcastError(RfmflowError):
    """A broadcast cannot do what was asked. ``status``: the HTTP status that says why
    (404 unknown, 409 not in a state that allows it); ``loc``: the field at fault, if any."""

    def __init__(self, message: str, *, status: int = 409, loc: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.loc = tuple(loc)


class ConfirmationNeeded(BroadcastError):
    """The audience is above the confirmation size and the start did not repeat its count (or
    the count moved more than the tolerance since it was shown)."""

    def __init__(self, message: str, *, audience: int, confirm_above: int) -> None:
        super().__init__(message, status=409, loc=("body", "confirm_count"))
        self.audience = audience
        self.confirm_above = confirm_above


# --- the audience ---------------------------------------------------------------------------
Score = Field(default=None, ge=0, le=100)
Count = Field(default=None, ge=0)


class Audience(BaseModel):
    """Who a broadcast goes to: the same filters, with the same names, as ``GET /v1/customers``
    (:class:`~rfmflow.service.customer_search.CustomerFilter`): all of them must hold."""

    model_config = ConfigDict(extra="forbid")

    segment: list[str] | None = Field(default=None, description="any of these segments")
    lifecycle: list[str] | None = Field(default=None, description="any of these lifecycle stages")
    churn_risk: list[str] | None = Field(default=None, description="any of these predicted churn risks")
    tag: list[str] | None = Field(default=None, description="all of these tags")
    tag_any: list[str] | None = Field(default=None, description="at least one of these tags")
    tag_none: list[str] | None = Field(default=None, description="none of these tags")
    r_score_min: int | None = Score
    r_score_max: int | None = Score
    f_score_min: int | None = Score
    f_score_max: int | None = Score
    m_score_min: int | None = Score
    m_score_max: int | None = Score
    recency_min: int | None = Count
    recency_max: int | None = Count
    frequency_min: int | None = Count
    frequency_max: int | None = Count
    monetary_min: Decimal | None = Field(default=None, description="in currency units when M is money")
    monetary_max: Decimal | None = Field(default=None, description="in currency units when M is money")
    q: str | None = Field(default=None, min_length=1, max_length=256)

    def to_filter(self) -> CustomerFilter:
        return CustomerFilter(
            segments=tuple(self.segment or ()),
            lifecycles=tuple(self.lifecycle or ()),
            churn_risks=tuple(self.churn_risk or ()),
            tags_all=tuple(self.tag or ()),
            tags_any=tuple(self.tag_any or ()),
            tags_none=tuple(self.tag_none or ()),
            r_score=Bounds(self.r_score_min, self.r_score_max),
            f_score=Bounds(self.f_score_min, self.f_score_max),
            m_score=Bounds(self.m_score_min, self.m_score_max),
            recency=Bounds(self.recency_min, self.recency_max),
            frequency=Bounds(self.frequency_min, self.frequency_max),
            monetary=Bounds(self.monetary_min, self.monetary_max),
            q=self.q,
        )

    def stored(self) -> dict[str, Any]:
        """As JSON for ``broadcasts.audience`` (only what was given)."""
        return self.model_dump(mode="json", exclude_none=True)


def audience_problems(audience: Audience) -> list[tuple[str, str]]:
    """Upside-down ranges and a blank ``q``, named by audience field."""
    return audience.to_filter().problems()


# --- the message ----------------------------------------------------------------------------
def check_message(channel: str, message: Mapping[str, Any], variables: Any) -> tuple[Message, dict[str, str]]:
    """The broadcast's message and vars, checked as a workflow's send step; raises
    :class:`BroadcastError` (422) naming the field (``message.text``, ``vars.coupon``, ...)."""
    try:
        if isinstance(message, Mapping) and message.get("fallback") is not None:
            raise WorkflowError(
                "", where="message.fallback", reason="a broadcast goes out on one channel; leave fallback out"
            )
        return read_message(channel, message, variables, owner="broadcast")
    except WorkflowError as err:
        where = err.where or "message"
        raise BroadcastError(f"{where}: {err.reason}", status=422, loc=("body", *where.split("."))) from None


class Renderer:
    """A broadcast's templates compiled once (in the workflow templates' sandbox), rendered for
    each customer into the outbox message the dispatcher sends (the shape a workflow's send
    step writes: text, subject, html, buttons as [label, target], payload)."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self._text = compile_template(message.text)
        self._subject = compile_template(message.subject)
        self._html = compile_template(message.html)
        self._buttons = [
            (compile_template(label), compile_template(target)) for label, target in message.buttons
        ]
        self._payload = {key: compile_template(value) for key, value in message.payload.items()}

    def __call__(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "text": self._text.render(values),
            "subject": self._subject.render(values),
            "html": self._html.render(values),
            "buttons": [[label.render(values), target.render(values)] for label, target in self._buttons],
            "payload": {key: value.render(values) for key, value in self._payload.items()},
            "fallback": None,
        }


# --- rows -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Broadcast:
    id: int
    name: str
    channel: str
    message: dict[str, Any]
    vars: dict[str, str]
    audience: Audience
    status: str
    audience_count: int | None
    cap_policy: str
    scheduled_at: datetime | None
    created_at: datetime
    created_by: str
    started_at: datetime | None
    finished_at: datetime | None

    def checked_message(self) -> Message:
        return check_message(self.channel, self.message, self.vars or None)[0]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "channel": self.channel,
            "message": self.message,
            "vars": self.vars,
            "audience": self.audience.stored(),
            "status": self.status,
            "audience_count": self.audience_count,
            "cap_policy": self.cap_policy,
            "scheduled_at": _iso(self.scheduled_at),
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _broadcast(row: Any) -> Broadcast:
    stored = dict(row.message)
    variables = stored.pop("vars", None) or {}
    return Broadcast(
        id=row.id,
        name=row.name,
        channel=row.channel,
        message=stored,
        vars=dict(variables),
        audience=Audience.model_validate(row.audience),
        status=row.status,
        audience_count=row.audience_count,
        cap_policy=row.cap_policy,
        scheduled_at=row.scheduled_at,
        created_at=row.created_at,
        created_by=row.created_by,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _audit(
    conn: Connection, actor: str, action: str, broadcast_id: int, at: datetime, **details: Any
) -> None:
    conn.execute(
        sa.insert(audit_log).values(
            at=at, actor=actor, action=action, target=f"broadcast:{broadcast_id}", details=details
        )
    )


def get_broadcast(conn: Connection, broadcast_id: int, *, lock: bool = False) -> Broadcast:
    """The broadcast (404 :class:`BroadcastError` when there is none); ``lock``: hold its row
    until the transaction ends (PostgreSQL ``FOR UPDATE``; SQLite writes one at a time)."""
    query = sa.select(broadcasts).where(broadcasts.c.id == broadcast_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    if row is None:
        raise BroadcastError(f"no broadcast {broadcast_id}", status=404)
    return _broadcast(row)


def create_broadcast(
    conn: Connection,
    *,
    name: str,
    channel: str,
    message: Mapping[str, Any],
    variables: Mapping[str, Any] | None,
    audience: Audience,
    scheduled_at: datetime | None,
    cap_policy: CapPolicy,
    actor: str,
    at: datetime,
) -> Broadcast:
    """Check and store a new ``draft`` broadcast (422 :class:`BroadcastError` naming the field)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise BroadcastError(
            f"name: 1 to {MAX_NAME} characters, got {len(name)}", status=422, loc=("body", "name")
        )
    problems = audience_problems(audience)
    if problems:
        field, reason = problems[0]
        raise BroadcastError(f"audience.{field}: {reason}", status=422, loc=("body", "audience", field))
    _checked, checked_vars = check_message(channel, message, dict(variables) if variables else None)
    if scheduled_at is not None and scheduled_at.tzinfo is None:
        raise BroadcastError(
            "scheduled_at: give a time zone (for example 2026-12-01T09:00:00Z)",
            status=422,
            loc=("body", "scheduled_at"),
        )
    stored = {k: v for k, v in message.items() if k != "channel"}
    stored["vars"] = checked_vars
    new_id = conn.execute(
        sa.insert(broadcasts)
        .values(
            name=name,
            channel=channel,
            message=stored,
            audience=audience.stored(),
            status="draft",
            cap_policy=cap_policy,
            scheduled_at=scheduled_at,
            created_at=at,
            created_by=actor,
        )
        .returning(broadcasts.c.id)
    ).scalar_one()
    _audit(conn, actor, "broadcast.create", new_id, at, name=name, channel=channel)
    return get_broadcast(conn, int(new_id))


def list_broadcasts(conn: Connection, *, limit: int = 100) -> list[Broadcast]:
    rows = conn.execute(sa.select(broadcasts).order_by(broadcasts.c.id.desc()).limit(limit)).all()
    return [_broadcast(r) for r in rows]


def outbox_counts(conn: Connection, broadcast_id: int) -> dict[str, int]:
    """The broadcast's outbox rows per status."""
    o = outbox.c
    rows = conn.execute(
        sa.select(o.status, sa.func.count()).where(o.broadcast_id == broadcast_id).group_by(o.status)
    ).all()
    return {str(status): int(n) for status, n in rows}


# --- the audience, counted and read -----------------------------------------------------------
def _address(channel: str) -> sa.ColumnElement[bool]:
    """The customer has an address on ``channel`` (a webhook's URL is the installation's)."""
    p = customer_profiles.c
    if channel == "telegram":
        return p.telegram_chat_id.is_not(None)
    if channel == "email":
        return sa.and_(p.email.is_not(None), p.email != "")
    return sa.true()


def _audience_from(channel: str) -> sa.FromClause:
    cs, p, c = customer_scores.c, customer_profiles.c, consents.c
    return customer_scores.outerjoin(customer_profiles, p.customer_id == cs.customer_id).outerjoin(
        consents, sa.and_(c.customer_id == cs.customer_id, c.channel == channel)
    )


def preview(conn: Connection, settings: Settings, audience: Audience, channel: str) -> dict[str, int]:
    """How many customers the audience holds now, how many of them opted out of ``channel``,
    how many (of the others) have no address on it, and how many can be sent to. One query."""
    where = conditions(conn, audience.to_filter(), money=money_scheme(conn), settings=settings)
    out_ = consents.c.status == "opted_out"
    no_address = sa.and_(
        sa.not_(sa.func.coalesce(out_, False)), sa.not_(sa.func.coalesce(_address(channel), False))
    )
    row = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((out_, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((no_address, 1), else_=0)), 0),
        )
        .select_from(_audience_from(channel))
        .where(*where)
    ).one()
    total, opted_out, missing = int(row[0]), int(row[1]), int(row[2])
    return {
        "audience": total,
        "opted_out": opted_out,
        "no_address": missing,
        "reachable": total - opted_out - missing,
    }


def _confirm(settings: Settings, count: int, confirm_count: int | None) -> None:
    above = settings.broadcast_confirm_above
    if count <= above:
        return
    if confirm_count is None:
        raise ConfirmationNeeded(
            f"confirm_count: this broadcast reaches {count:,} customers (more than {above:,}); "
            f"start it again with confirm_count={count}",
            audience=count,
            confirm_above=above,
        )
    allowed = settings.broadcast_confirm_tolerance * max(confirm_count, 1)
    if abs(count - confirm_count) > allowed:
        raise ConfirmationNeeded(
            f"confirm_count: the audience is now {count:,} customers, not the {confirm_count:,} confirmed "
            f"(tolerance {settings.broadcast_confirm_tolerance:.0%}); "
            "preview it again and confirm the new count",
            audience=count,
            confirm_above=above,
        )


def _customer_values(
    row: Any, tags: Sequence[str], variables: Mapping[str, str], decimals: int
) -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(TEMPLATE_FIELDS)
    values["unsubscribe_url"] = UNSUBSCRIBE_MARK  # the sender puts the message's link there
    name = row.name
    monetary = (
        row.monetary if row.monetary_minor is None else Decimal(int(row.monetary_minor)).scaleb(-decimals)
    )
    values.update(
        customer_id=row.customer_id,
        name=name,
        first_name=name.split()[0] if name and name.split() else None,
        email=row.email,
        phone=row.phone,
        language=row.language,
        timezone=row.timezone,
        segment=row.segment,
        rfm=row.rfm,
        lifecycle=row.lifecycle,
        r_score=row.r_score,
        f_score=row.f_score,
        m_score=row.m_score,
        recency_days=row.recency_days,
        frequency=row.frequency,
        monetary=monetary,
        tenure_days=row.tenure_days,
        tags=sorted(tags),
        traits=dict(row.traits or {}),
    )
    values.update(variables)
    return values


def _batch_rows(
    conn: Connection, settings: Settings, b: Broadcast, after: str | None, limit: int
) -> list[Any]:
    cs, p, c = customer_scores.c, customer_profiles.c, consents.c
    where = conditions(conn, b.audience.to_filter(), money=money_scheme(conn), settings=settings)
    if after is not None:
        where.append(cs.customer_id > after)
    query = (
        sa.select(
            cs.customer_id,
            cs.segment,
            cs.rfm,
            cs.lifecycle,
            cs.r_score,
            cs.f_score,
            cs.m_score,
            cs.recency_days,
            cs.frequency,
            cs.monetary_minor,
            cs.monetary,
            cs.tenure_days,
            p.name,
            p.email,
            p.phone,
            p.language,
            p.timezone,
            p.telegram_chat_id,
            p.traits,
            c.status.label("consent"),
        )
        .select_from(_audience_from(b.channel))
        .where(*where)
        .order_by(cs.customer_id)
        .limit(limit)
    )
    return list(conn.execute(query).all())


def _tags(conn: Connection, first: str, last: str) -> dict[str, list[str]]:
    ct = customer_tags.c
    found: dict[str, list[str]] = {}
    rows = conn.execute(
        sa.select(ct.customer_id, ct.tag).where(ct.customer_id >= first, ct.customer_id <= last)
    )
    for customer_id, tag in rows:
        found.setdefault(str(customer_id), []).append(str(tag))
    return found


def _recipient(channel: str, row: Any) -> str | None:
    if channel == "telegram":
        return None if row.telegram_chat_id is None else str(row.telegram_chat_id)
    if channel == "email":
        return row.email or None
    return None


def _outbox_row(
    b: Broadcast, render: Renderer, row: Any, tags: Sequence[str], now: datetime, decimals: int
) -> dict[str, Any]:
    recipient = _recipient(b.channel, row)
    reason = None
    if row.consent == "opted_out":
        reason = f"opted out of {b.channel}"
    elif b.channel != "webhook" and recipient is None:
        reason = f"no {b.channel} address"
    rendered = render(_customer_values(row, tags, b.vars, decimals)) if reason is None else {}
    rendered["cap_policy"] = b.cap_policy
    rendered["broadcast"] = b.name
    return {
        "dedupe_key": f"bc:{b.id}:{row.customer_id}",
        "customer_id": row.customer_id,
        "channel": b.channel,
        "recipient": recipient,
        "message": rendered,
        "status": "pending" if reason is None else "skipped",
        "attempts": 0,
        "not_before": b.scheduled_at if b.scheduled_at is not None and b.scheduled_at > now else now,
        "created_at": now,
        "reason": reason,
        "broadcast_id": b.id,
        "segment": row.segment,
    }


def _insert_new(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert rows whose ``dedupe_key`` is not there yet (a retried start writes nothing twice)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(outbox).on_conflict_do_nothing(index_elements=["dedupe_key"]), rows)
    else:
        conn.execute(sqlite.insert(outbox).on_conflict_do_nothing(index_elements=["dedupe_key"]), rows)


def _write_batch(
    conn: Connection,
    settings: Settings,
    b: Broadcast,
    render: Renderer,
    after: str | None,
    batch: int,
    now: datetime,
) -> tuple[bool, str | None]:
    """Write the outbox rows of the next ``batch`` customers after ``after``; whether more may
    follow, and the last customer written."""
    locked = conn.execute(
        sa.update(broadcasts)
        .where(broadcasts.c.id == b.id, broadcasts.c.status.in_(LIVE))
        .values(status=broadcasts.c.status)
    ).rowcount
    if not locked:  # stopped meanwhile: write no more
        return False, None
    found = _batch_rows(conn, settings, b, after, batch)
    if not found:
        return False, None
    tags = _tags(conn, found[0].customer_id, found[-1].customer_id)
    decimals = settings.money_decimals
    _insert_new(conn, [_outbox_row(b, render, r, tags.get(r.customer_id, ()), now, decimals) for r in found])
    return len(found) == batch, str(found[-1].customer_id)


# --- the life of a broadcast ------------------------------------------------------------------
def start(
    engine: Engine,
    settings: Settings,
    broadcast_id: int,
    *,
    confirm_count: int | None,
    actor: str,
    now: datetime,
    batch: int = BATCH,
) -> dict[str, Any]:
    """Start a draft broadcast (or finish writing one whose start was interrupted): write its
    outbox rows in batches. A broadcast already started answers what it wrote, writing nothing."""

    def begin(conn: Connection) -> tuple[Broadcast, bool]:
        b = get_broadcast(conn, broadcast_id, lock=True)
        if b.started_at is not None:
            return b, False
        if b.status in ("stopped", "done"):
            raise BroadcastError(f"broadcast {broadcast_id} is {b.status}; it cannot be started")
        if b.status == "draft":
            count = preview(conn, settings, b.audience, b.channel)["audience"]
            _confirm(settings, count, confirm_count)
            status = "scheduled" if b.scheduled_at is not None and b.scheduled_at > now else "running"
            conn.execute(
                sa.update(broadcasts)
                .where(broadcasts.c.id == broadcast_id)
                .values(status=status, audience_count=count)
            )
            _audit(conn, actor, "broadcast.start", broadcast_id, now, audience=count, confirmed=confirm_count)
        else:
            _audit(conn, actor, "broadcast.start", broadcast_id, now, resumed_writing=True)
        return get_broadcast(conn, broadcast_id), True

    b, writing = run_write(engine, begin)
    render = Renderer(b.checked_message())
    after: str | None = None
    while writing:
        writing, after = run_write(
            engine,
            partial(_write_batch, settings=settings, b=b, render=render, after=after, batch=batch, now=now),
        )

    def finish(conn: Connection) -> None:
        conn.execute(
            sa.update(broadcasts)
            .where(
                broadcasts.c.id == broadcast_id,
                broadcasts.c.started_at.is_(None),
                broadcasts.c.status.in_(LIVE),
            )
            .values(started_at=now)
        )

    run_write(engine, finish)
    with engine.connect() as conn:
        done = get_broadcast(conn, broadcast_id)
        return {"broadcast": done.as_dict(), "outbox": outbox_counts(conn, broadcast_id)}


def _transition(
    engine: Engine,
    broadcast_id: int,
    *,
    allowed: Sequence[str],
    action: str,
    actor: str,
    now: datetime,
    new_status: Any,
    same_ok: str | None = None,
) -> tuple[Broadcast, int]:
    def work(conn: Connection) -> tuple[Broadcast, int]:
        b = get_broadcast(conn, broadcast_id, lock=True)
        if same_ok is not None and b.status == same_ok:
            return b, 0
        if b.status not in allowed:
            raise BroadcastError(
                f"broadcast {broadcast_id} is {b.status}; {action} needs one of: {', '.join(allowed)}"
            )
        status = new_status(b) if callable(new_status) else new_status
        values: dict[str, Any] = {"status": status}
        cancelled = 0
        if status == "stopped":
            values["finished_at"] = now
            cancelled = conn.execute(
                sa.update(outbox)
                .where(outbox.c.broadcast_id == broadcast_id, outbox.c.status.in_(OPEN_ROWS))
                .values(status="cancelled", reason=f"broadcast stopped by {actor}")
            ).rowcount
        conn.execute(sa.update(broadcasts).where(broadcasts.c.id == broadcast_id).values(**values))
        details: dict[str, Any] = {"from": b.status}
        if status == "stopped":
            details["cancelled"] = cancelled
        _audit(conn, actor, f"broadcast.{action}", broadcast_id, now, **details)
        return get_broadcast(conn, broadcast_id), cancelled

    return run_write(engine, work)


def pause(engine: Engine, broadcast_id: int, *, actor: str, now: datetime) -> Broadcast:
    """Hold a started broadcast: the dispatcher leaves its rows waiting."""
    return _transition(
        engine, broadcast_id, allowed=("scheduled", "running"), action="pause", actor=actor, now=now,
        new_status="paused", same_ok="paused",
    )[0]  # fmt: skip


def resume(engine: Engine, broadcast_id: int, *, actor: str, now: datetime) -> Broadcast:
    """Let a paused broadcast send again."""

    def status(b: Broadcast) -> str:
        return "scheduled" if b.scheduled_at is not None and b.scheduled_at > now else "running"

    return _transition(
        engine, broadcast_id, allowed=("paused",), action="resume", actor=actor, now=now, new_status=status,
        same_ok=None,
    )[0]  # fmt: skip


def stop(engine: Engine, broadcast_id: int, *, actor: str, now: datetime) -> tuple[Broadcast, int]:
    """The kill switch: ``stopped`` now, and every pending or deferred row cancelled in the same
    statement (a row already ``sending`` finishes). Stopping a stopped broadcast does nothing."""
    return _transition(
        engine, broadcast_id, allowed=("draft", *LIVE), action="stop", actor=actor, now=now,
        new_status="stopped", same_ok="stopped",
    )  # fmt: skip


def settle(conn: Connection, broadcast_id: int, now: datetime) -> None:
    """Mark a started broadcast ``done`` once none of its rows is left to send."""
    o = outbox.c
    waiting = (
        sa.select(o.id)
        .where(o.broadcast_id == broadcast_id, o.status.in_(("pending", "deferred", "sending")))
        .exists()
    )
    conn.execute(
        sa.update(broadcasts)
        .where(
            broadcasts.c.id == broadcast_id,
            broadcasts.c.status.in_(("scheduled", "running")),
            broadcasts.c.started_at.is_not(None),
            ~waiting,
        )
        .values(status="done", finished_at=now)
    )


__all__ = [
    "Audience",
    "Broadcast",
    "BroadcastError",
    "ConfirmationNeeded",
    "Renderer",
    "check_message",
    "create_broadcast",
    "get_broadcast",
    "list_broadcasts",
    "outbox_counts",
    "pause",
    "preview",
    "resume",
    "settle",
    "start",
    "stop",
]

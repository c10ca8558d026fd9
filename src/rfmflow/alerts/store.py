"""Alert rules and their occurrences in the database (``alert_rules``, ``alert_events``).

Rules are checked (:mod:`rfmflow.alerts.rules`) before they are written; a name is unique.

An occurrence is one ``alert_events`` row, unique by ``(rule_id, occurrence)``: inserting the
same occurrence again does nothing, which is what delivers a condition once. Its ``status``:

``pending`` → ``sending`` → ``sent``
    claimed (``sending``, the attempt counted, committed) before anything is sent;
``pending`` again
    the send did not go (the channel deferred or refused it): tried again after 1, 5 and 30
    minutes, ``failed`` after :data:`MAX_ATTEMPTS` attempts (at once when the chat blocked the bot);
``unknown``
    the send may have gone (no answer; or the process stopped while sending and the lease
    expired): never sent again.

The table has no lease column: while an occurrence is ``sending`` (or waiting to be tried
again), ``delivered_at`` holds when its latest attempt started; once ``sent`` it holds when
the channel took it. ``error`` holds the latest reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.alerts.rules import KINDS, Occurrence, RuleError, check_params, check_target, describe
from rfmflow.channels.outbound import SendOutcome
from rfmflow.service.db.store import insert_or_ignore
from rfmflow.service.db.tables import alert_events, alert_rules

MAX_ATTEMPTS = 4
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30))
STATUSES = ("pending", "sending", "sent", "failed", "unknown")


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    kind: str
    params: dict[str, Any]
    channel: str
    target: str
    enabled: bool
    created_at: datetime
    created_by: str
    updated_at: datetime

    @property
    def description(self) -> str:
        return describe(self.kind, self.params)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "params": self.params,
            "channel": self.channel,
            "target": self.target,
            "enabled": self.enabled,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "updated_at": self.updated_at.isoformat(),
        }


class RuleNotFound(RuleError):
    def __init__(self, rule_id: int) -> None:
        super().__init__("id", f"no alert rule {rule_id}")


class NameTaken(RuleError):
    def __init__(self, name: str) -> None:
        super().__init__("name", f"a rule named {name!r} exists already")


def _rule(row: Any) -> Rule:
    return Rule(
        id=int(row.id),
        name=row.name,
        kind=row.kind,
        params=dict(row.params),
        channel=row.channel,
        target=row.target,
        enabled=bool(row.enabled),
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
    )


def check_rule(values: Mapping[str, Any]) -> dict[str, Any]:
    """A whole rule (name, kind, params, channel, target, enabled) checked and normalised."""
    name = values.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError("name", "is required")
    if len(name.strip()) > 200:
        raise RuleError("name", "is longer than 200 characters")
    kind = values.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise RuleError("kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    channel = values.get("channel")
    if not isinstance(channel, str):
        raise RuleError("channel", "is required: telegram, email or webhook")
    target = values.get("target")
    if not isinstance(target, str):
        raise RuleError("target", "is required")
    enabled = values.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError("enabled", f"must be true or false, not {enabled!r}")
    return {
        "name": name.strip(),
        "kind": kind,
        "params": check_params(kind, values.get("params", {})),
        "channel": channel,
        "target": check_target(channel, target),
        "enabled": enabled,
    }


def list_rules(conn: Connection, *, enabled_only: bool = False) -> list[Rule]:
    query = sa.select(alert_rules).order_by(alert_rules.c.id)
    if enabled_only:
        query = query.where(alert_rules.c.enabled.is_(True))
    return [_rule(r) for r in conn.execute(query)]


def get_rule(conn: Connection, rule_id: int) -> Rule:
    row = conn.execute(sa.select(alert_rules).where(alert_rules.c.id == rule_id)).first()
    if row is None:
        raise RuleNotFound(rule_id)
    return _rule(row)


def _name_free(conn: Connection, name: str, except_id: int | None = None) -> None:
    query = sa.select(alert_rules.c.id).where(alert_rules.c.name == name)
    if except_id is not None:
        query = query.where(alert_rules.c.id != except_id)
    if conn.execute(query).first() is not None:
        raise NameTaken(name)


def create_rule(conn: Connection, values: Mapping[str, Any], *, actor: str, at: datetime) -> Rule:
    checked = check_rule(values)
    _name_free(conn, checked["name"])
    new_id = conn.execute(
        sa.insert(alert_rules)
        .values(**checked, created_at=at, created_by=actor, updated_at=at)
        .returning(alert_rules.c.id)
    ).scalar_one()
    return get_rule(conn, int(new_id))


def update_rule(conn: Connection, rule_id: int, changes: Mapping[str, Any], *, at: datetime) -> Rule:
    """Change some fields of a rule (the rest stay); the whole rule is checked again."""
    current = get_rule(conn, rule_id)
    merged = {
        "name": current.name,
        "kind": current.kind,
        "params": current.params,
        "channel": current.channel,
        "target": current.target,
        "enabled": current.enabled,
        **changes,
    }
    if "kind" in changes and "params" not in changes and changes["kind"] != current.kind:
        raise RuleError("params", f"give the parameters of kind {changes['kind']!r} with it")
    checked = check_rule(merged)
    _name_free(conn, checked["name"], rule_id)
    conn.execute(sa.update(alert_rules).where(alert_rules.c.id == rule_id).values(**checked, updated_at=at))
    return get_rule(conn, rule_id)


def delete_rule(conn: Connection, rule_id: int) -> None:
    """Delete the rule; its occurrences stay in the history, and pending ones are not sent."""
    get_rule(conn, rule_id)
    conn.execute(sa.delete(alert_rules).where(alert_rules.c.id == rule_id))
    e = alert_events.c
    conn.execute(
        sa.update(alert_events)
        .where(e.rule_id == rule_id, e.status == "pending")
        .values(status="failed", error="the rule was deleted before it was sent")
    )


# --- occurrences -------------------------------------------------------------------------------
def record_occurrence(conn: Connection, rule: Rule, occurrence: Occurrence, *, at: datetime) -> bool:
    """Insert the occurrence (``pending``) unless it is there already; whether it is new."""
    return insert_or_ignore(
        conn,
        alert_events,
        {
            "rule_id": rule.id,
            "occurrence": occurrence.key[:200],
            "fired_at": at,
            "title": occurrence.title[:300],
            "message": occurrence.message,
            "details": occurrence.details,
            "status": "pending",
            "attempts": 0,
        },
    )


def event_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": int(row["id"]),
        "rule_id": int(row["rule_id"]),
        "rule": row.get("rule_name"),
        "channel": row.get("channel"),
        "target": row.get("target"),
        "occurrence": row["occurrence"],
        "fired_at": iso(row["fired_at"]),
        "title": row["title"],
        "message": row["message"],
        "details": row["details"],
        "status": row["status"],
        "attempts": int(row["attempts"]),
        "delivered_at": iso(row["delivered_at"]) if row["status"] == "sent" else None,
        "last_attempt_at": iso(row["delivered_at"]),
        "error": row["error"],
    }


def list_events(
    conn: Connection,
    *,
    rule_id: int | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Occurrences, newest first, with their rule's name, channel and target."""
    e, r = alert_events.c, alert_rules.c
    query = sa.select(
        alert_events, r.name.label("rule_name"), r.channel.label("channel"), r.target.label("target")
    ).select_from(alert_events.outerjoin(alert_rules, r.id == e.rule_id))
    if rule_id is not None:
        query = query.where(e.rule_id == rule_id)
    if status is not None:
        query = query.where(e.status == status)
    if since is not None:
        query = query.where(e.fired_at >= since)
    if until is not None:
        query = query.where(e.fired_at < until)
    if before_id is not None:
        query = query.where(e.id < before_id)
    rows = conn.execute(query.order_by(e.id.desc()).limit(limit)).mappings()
    return [event_json(row) for row in rows]


# --- delivery bookkeeping ----------------------------------------------------------------------
@dataclass(frozen=True)
class Claimed:
    id: int
    attempt: int
    channel: str
    target: str
    title: str
    message: str
    details: dict[str, Any]
    rule_name: str


def recover_expired(conn: Connection, now: datetime, lease: timedelta) -> int:
    """Occurrences left ``sending`` past the lease become ``unknown`` (never sent again)."""
    e = alert_events.c
    done = conn.execute(
        sa.update(alert_events)
        .where(e.status == "sending", e.delivered_at < now - lease)
        .values(
            status="unknown",
            error="the process stopped while sending it: it may have been sent, so it is not sent again",
        )
    ).rowcount
    return int(done or 0)


def _due(attempts: int, last: datetime | None, now: datetime) -> bool:
    if attempts == 0 or last is None:
        return True
    return last + BACKOFF[min(attempts, len(BACKOFF)) - 1] <= now


def claim(conn: Connection, now: datetime, channels: set[str], *, limit: int = 50) -> list[Claimed]:
    """Mark due ``pending`` occurrences ``sending`` (the caller commits before sending).
    One whose channel has no sender configured stays pending with the reason."""
    e, r = alert_events.c, alert_rules.c
    query = (
        sa.select(alert_events, r.name.label("rule_name"), r.channel, r.target)
        .select_from(alert_events.join(alert_rules, r.id == e.rule_id))
        .where(e.status == "pending")
        .order_by(e.id)
        .limit(limit * 4)
    )
    out: list[Claimed] = []
    for row in conn.execute(query).mappings():
        if len(out) >= limit or not _due(int(row["attempts"]), row["delivered_at"], now):
            continue
        if row["channel"] not in channels:
            reason = f"the {row['channel']} channel is not configured (see docs/alerts.md)"
            if row["error"] != reason:
                conn.execute(sa.update(alert_events).where(e.id == row["id"]).values(error=reason))
            continue
        attempt = int(row["attempts"]) + 1
        taken = conn.execute(
            sa.update(alert_events)
            .where(e.id == row["id"], e.status == "pending", e.attempts == row["attempts"])
            .values(status="sending", attempts=attempt, delivered_at=now)
        ).rowcount
        if taken:
            out.append(
                Claimed(
                    int(row["id"]),
                    attempt,
                    row["channel"],
                    row["target"],
                    row["title"],
                    row["message"],
                    dict(row["details"] or {}),
                    row["rule_name"],
                )
            )
    return out


def record(conn: Connection, item: Claimed, outcome: SendOutcome, now: datetime) -> str:
    """The send's outcome on the occurrence (only while it is still this attempt's)."""
    e = alert_events.c
    values: dict[str, Any] = {"error": outcome.reason}
    if outcome.status == "delivered":
        values.update(status="sent", delivered_at=outcome.sent_at or now, error=None)
    elif outcome.status in ("deferred", "failed") and item.attempt < MAX_ATTEMPTS:
        values["status"] = "pending"
    elif outcome.status in ("deferred", "failed", "blocked"):
        values["status"] = "failed"
    else:  # unknown, duplicate: it may have gone
        values["status"] = "unknown"
    done = conn.execute(
        sa.update(alert_events)
        .where(e.id == item.id, e.status == "sending", e.attempts == item.attempt)
        .values(**values)
    ).rowcount
    return str(values["status"]) if done else "lost"


def counts_by_status(conn: Connection) -> dict[str, int]:
    e = alert_events.c
    rows = conn.execute(sa.select(e.status, sa.func.count()).group_by(e.status)).all()
    return {str(s): int(n) for s, n in rows}


__all__ = [
    "BACKOFF",
    "MAX_ATTEMPTS",
    "STATUSES",
    "Claimed",
    "NameTaken",
    "Rule",
    "RuleNotFound",
    "check_rule",
    "claim",
    "counts_by_status",
    "create_rule",
    "delete_rule",
    "event_json",
    "get_rule",
    "list_events",
    "list_rules",
    "record",
    "record_occurrence",
    "recover_expired",
    "update_rule",
]

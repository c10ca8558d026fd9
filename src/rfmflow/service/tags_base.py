"""What the tag modules share: name rules, errors, the audit row, the tag-write lock, and
removing tags from everyone (see :mod:`rfmflow.service.tags`)."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.core.errors import RfmflowError
from rfmflow.service.db.tables import audit_log, customer_tags, tag_changes

log = logging.getLogger("rfmflow.service.tags")
MAX_NAME = 64
MAX_DESCRIPTION = 1000
MAX_CUSTOMER_ID = 256
NAME_RULE = (
    "1 to 64 characters: letters, digits, spaces and - _ : . (starting and ending with a letter or digit)"
)
_NAME = re.compile(r"[^\W_](?:[\w .:-]*[^\W_])?")
CHUNK = 500


# --- errors ------------------------------------------------------------------------------------
class TagError(RfmflowError):
    """A tag operation cannot be done as asked; ``status`` is the HTTP status it answers."""

    status = 422

    def __init__(self, message: str, *, loc: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.loc = tuple(loc)


class TagNotFound(TagError):
    """An unknown tag, group or customer."""

    status = 404


class TagConflict(TagError):
    """The operation contradicts the stored state (a rule tag, a name taken, a group in use)."""

    status = 409


def check_name(value: str, what: str = "tag", *, loc: Sequence[str | int] = ("name",)) -> str:
    """``value`` as a valid name (NFC, stripped of nothing: surrounding spaces are an error)."""
    if not isinstance(value, str):
        raise TagError(f"{what} name must be text", loc=loc)
    name = unicodedata.normalize("NFC", value)
    if not name:
        raise TagError(f"{what} name is empty ({NAME_RULE})", loc=loc)
    if len(name) > MAX_NAME:
        raise TagError(f"{what} name is {len(name)} characters; the limit is {MAX_NAME}", loc=loc)
    if _NAME.fullmatch(name) is None:
        raise TagError(f"{what} name {name!r} is not allowed: {NAME_RULE}", loc=loc)
    return name


def check_description(value: str | None, *, loc: Sequence[str | int] = ("description",)) -> str:
    text = value or ""
    if len(text) > MAX_DESCRIPTION:
        raise TagError(f"description is {len(text)} characters; the limit is {MAX_DESCRIPTION}", loc=loc)
    return text


def audit(
    conn: Connection, at: datetime, actor: str, action: str, target: str, details: dict[str, Any]
) -> None:
    conn.execute(
        sa.insert(audit_log).values(at=at, actor=actor, action=action, target=target, details=details)
    )


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


_TAG_LOCK = "SELECT pg_advisory_xact_lock((1380339014::bigint << 32) + 'tag_changes'::regclass::oid::bigint)"


def lock_tag_writes(conn: Connection) -> None:
    """Take the tag-write lock until the transaction ends (PostgreSQL; SQLite's write lock
    already lets one writer in at a time).

    Every transaction that changes tags takes it before writing, so ``tag_changes`` ids
    become visible in id order: a feed reader following ``id > cursor`` never skips a
    change that a slower transaction commits later. Order of locks, to stay free of
    deadlocks: ``customers`` rows, then ``customer_scores``, then this lock, then the tag
    tables' rows. Taking it twice in one transaction is harmless.
    """
    if is_postgres(conn):
        conn.exec_driver_sql(_TAG_LOCK)


def remove_everywhere(
    conn: Connection, names: Sequence[str], *, kind: str, at: datetime, actor: str, run_id: int | None
) -> int:
    """Remove tags ``names`` from every customer, recording each removal."""
    if not names:
        return 0
    ct = customer_tags.c
    held = sa.select(
        ct.customer_id,
        ct.tag,
        sa.literal("removed", sa.String()),
        sa.literal(kind, sa.String()),
        sa.literal(at, tag_changes.c.at.type),
        sa.literal(actor, sa.String()),
        sa.literal(run_id, sa.Integer()),
    ).where(ct.tag.in_(list(names)))
    cols = ["customer_id", "tag", "change", "kind", "at", "actor", "run_id"]
    conn.execute(sa.insert(tag_changes).from_select(cols, held.order_by(ct.tag, ct.customer_id)))
    return int(conn.execute(sa.delete(customer_tags).where(ct.tag.in_(list(names)))).rowcount or 0)


__all__ = [
    "CHUNK",
    "MAX_CUSTOMER_ID",
    "MAX_NAME",
    "NAME_RULE",
    "TagConflict",
    "TagError",
    "TagNotFound",
    "audit",
    "check_description",
    "check_name",
    "is_postgres",
    "lock_tag_writes",
    "remove_everywhere",
]

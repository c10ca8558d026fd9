"""Customer profiles: who a customer is (traits), next to what they did (events).

A profile holds the traits that Segment ``identify`` calls, the API (``PATCH
/v1/customers/{id}/profile``) and the shop webhooks send, merged into one JSON object, and
lifts the ones automation needs into columns: ``email``, ``phone``, ``name``, ``timezone``
(IANA zone, for quiet hours and waits), ``language`` and ``telegram_chat_id``.

Merging: a later update overwrites the traits it names and keeps the others; an update that
is *older* than the stored one (identify calls can arrive out of order) only fills traits the
profile does not have yet. A trait set to ``null`` removes it. A trait that fails its check (an
address without ``@``, an unknown time zone) is not lifted into its column and is reported back
as a warning; the message is still accepted, as Segment's own destinations do.

Profiles are not derived from events and are not part of a rebuild; they may exist for a
customer without any event (someone who signed up and never bought).

A customer whose data was erased on request (a row in ``erasures``) keeps an empty profile:
later updates are accepted and ignored, so no personal data comes back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.service.db.store import insert_or_ignore
from rfmflow.service.db.tables import customer_profiles, erasures

PROFILE_FIELDS = ("email", "phone", "name", "timezone", "language", "telegram_chat_id")
"""The columns a profile lifts out of its traits."""

MAX_TRAITS_BYTES = 16 * 1024

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{5,40}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")

# Trait names that mean a column, as Segment's spec and common SDKs spell them.
_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "phone": ("phone",),
    "name": ("name",),
    "timezone": ("timezone", "time_zone", "timeZone"),
    "language": ("language", "locale"),
    "telegram_chat_id": ("telegram_chat_id", "telegramChatId"),
}


@dataclass
class ProfileUpdate:
    """What one update sets: its traits, the columns lifted from them, and warnings."""

    traits: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _check(name: str, value: Any) -> tuple[Any, str | None]:
    """The column value of trait ``name``, or ``None`` and why it was not used."""
    if value is None:
        return None, None
    if name == "telegram_chat_id":
        if isinstance(value, bool) or not isinstance(value, int | str):
            return None, f"telegram_chat_id: {value!r} is not an integer"
        try:
            number = int(value)
        except ValueError:
            return None, f"telegram_chat_id: {value!r} is not an integer"
        if not -(2**63) <= number < 2**63:
            return None, f"telegram_chat_id: {value!r} is out of range"
        return number, None
    if not isinstance(value, str):
        return None, f"{name}: expected a string, got {type(value).__name__}"
    text = value.strip()
    if not text:
        return None, None
    if name == "email":
        if len(text) > 320 or not _EMAIL.match(text):
            return None, f"email: {text!r} is not an email address"
        return text, None
    if name == "phone":
        if not _PHONE.match(text):
            return None, f"phone: {text!r} is not a phone number"
        return text, None
    if name == "timezone":
        try:
            ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            return None, f"timezone: {text!r} is not an IANA time zone (for example Europe/Berlin)"
        return text, None
    if name == "language":
        if not _LANGUAGE.match(text) or len(text) > 16:
            return None, f"language: {text!r} is not a language tag (for example en or pt-BR)"
        return text, None
    return text[:200], None  # name


def read_traits(traits: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> ProfileUpdate:
    """The profile update that ``traits`` (and a Segment message's ``context``) mean.

    ``name`` falls back to ``firstName``/``first_name`` + ``lastName``/``last_name``; the time
    zone and language fall back to Segment's ``context.timezone`` and ``context.locale``.
    """
    update = ProfileUpdate(traits=dict(traits))
    found: dict[str, Any] = {}
    for column, names in _ALIASES.items():
        for name in names:
            if name in traits:
                found[column] = traits[name]
                break
    if "name" not in found:
        first = traits.get("firstName", traits.get("first_name"))
        last = traits.get("lastName", traits.get("last_name"))
        parts = [p.strip() for p in (first, last) if isinstance(p, str) and p.strip()]
        if parts:
            found["name"] = " ".join(parts)
    if context:
        if "timezone" not in found and isinstance(context.get("timezone"), str):
            found["timezone"] = context["timezone"]
        if "language" not in found and isinstance(context.get("locale"), str):
            found["language"] = context["locale"]
    for column, value in found.items():
        checked, warning = _check(column, value)
        if warning is not None:
            update.warnings.append(warning)
            continue
        update.fields[column] = checked  # None clears the column
    return update


def upsert_profile(
    conn: Connection, customer_id: str, update: ProfileUpdate, *, at: datetime, source: str
) -> dict[str, Any]:
    """Merge ``update`` (dated ``at``) into the customer's profile and return the profile.

    Runs in the caller's transaction. On PostgreSQL the row is locked while merging, so two
    concurrent updates of one customer both land.
    """
    p = customer_profiles.c
    if conn.execute(sa.select(erasures.c.customer_id).where(erasures.c.customer_id == customer_id)).first():
        # erased on request (GDPR, rfmflow.automation.gdpr): personal data is not stored again
        blank = {"customer_id": customer_id, "traits": {}, "updated_at": at, "source": "erased"}
        return read_profile(conn, customer_id) or _out({**dict.fromkeys(PROFILE_FIELDS), **blank})
    query = sa.select(customer_profiles).where(p.customer_id == customer_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        traits = {k: v for k, v in update.traits.items() if v is not None}
        values = {
            "customer_id": customer_id,
            "traits": traits,
            **{f: update.fields.get(f) for f in PROFILE_FIELDS},
            "updated_at": at,
            "source": source,
        }
        if insert_or_ignore(conn, customer_profiles, values):
            return _out(values)
        return upsert_profile(conn, customer_id, update, at=at, source=source)  # a racer won: merge
    newer = at >= row["updated_at"]
    old = dict(row["traits"] or {})
    if newer:
        traits = {**old, **update.traits}
        fields = {f: update.fields[f] if f in update.fields else row[f] for f in PROFILE_FIELDS}
    else:
        traits = {**update.traits, **old}
        fields = {f: row[f] if row[f] is not None else update.fields.get(f) for f in PROFILE_FIELDS}
    traits = {k: v for k, v in traits.items() if v is not None}
    values = {
        "traits": traits,
        **fields,
        "updated_at": max(at, row["updated_at"]),
        "source": source if newer else row["source"],
    }
    conn.execute(sa.update(customer_profiles).where(p.customer_id == customer_id).values(**values))
    return _out({"customer_id": customer_id, **values})


def read_profile(conn: Connection, customer_id: str) -> dict[str, Any] | None:
    """The customer's profile for the API, or ``None`` when there is none."""
    row = (
        conn.execute(sa.select(customer_profiles).where(customer_profiles.c.customer_id == customer_id))
        .mappings()
        .first()
    )
    return None if row is None else _out(dict(row))


def _out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "customer_id": row["customer_id"],
        **{f: row[f] for f in PROFILE_FIELDS},
        "traits": dict(row["traits"] or {}),
        "updated_at": row["updated_at"].isoformat(),
        "source": row["source"],
    }


__all__ = ["PROFILE_FIELDS", "ProfileUpdate", "read_profile", "read_traits", "upsert_profile"]

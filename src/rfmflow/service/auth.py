"""API keys and roles.

A key reads ``rfm_<prefix>_<secret>``: the prefix (8 hex digits) finds the key, the secret
(32 random bytes, URL-safe base64) proves it. Only the SHA-256 of the secret is stored (a
plain hash is enough for a high-entropy random secret; a slow password hash would only cost
time on every request) and it is compared in constant time. A key is shown once, when it is
created.

Roles and what they may do:

=========  ==============================================================
role       permissions
=========  ==============================================================
admin      everything
analyst    read customers and segments, export
agent      read customers
ingest     write events
=========  ==============================================================

Creating and revoking keys is written to the audit log, with who did it.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from rfmflow.core.errors import RfmflowError
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import ROLES, api_keys, audit_log

Role = Literal["admin", "analyst", "agent", "ingest"]
Permission = Literal["events:write", "customers:read", "data:read", "data:export", "admin"]

PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {"events:write", "customers:read", "customers:write", "data:read", "data:export", "admin"}
    ),
    "analyst": frozenset({"customers:read", "data:read", "data:export"}),
    "agent": frozenset({"customers:read", "customers:write"}),
    "ingest": frozenset({"events:write"}),
}
"""``customers:write``: act on one customer — manual tags, consent, closing hand-off tasks."""


def roles_with(permission: str) -> tuple[str, ...]:
    """The roles whose keys (and users) have ``permission``."""
    return tuple(role for role, perms in PERMISSIONS.items() if permission in perms)


KEY_PATTERN = re.compile(r"rfm_([0-9a-f]{8})_([A-Za-z0-9_-]{20,128})")


class ApiKeyError(RfmflowError):
    """A key cannot be created or revoked as asked (unknown role, unknown id, ...)."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never its secret)."""

    id: int
    name: str
    prefix: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, permission: str) -> bool:
        return self.active and permission in PERMISSIONS.get(self.role, frozenset())

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def cli_actor() -> str:
    """``cli:<login name>``, for the audit log of commands run on the server."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def _audit(conn: Connection, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    conn.execute(
        sa.insert(audit_log).values(
            at=datetime.now(UTC), actor=actor, action=action, target=target, details=details
        )
    )


def _key(row: Any) -> ApiKey:
    return ApiKey(row.id, row.name, row.prefix, row.role, row.created_at, row.revoked_at)


def create_key(engine: Engine, *, role: str, name: str, actor: str) -> tuple[ApiKey, str]:
    """Create a key; return it and its full text ``rfm_<prefix>_<secret>`` (shown only now)."""
    if role not in ROLES:
        raise ApiKeyError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    name = name.strip()
    if not name or len(name) > 200:
        raise ApiKeyError("a key needs a name of 1 to 200 characters (what or who uses it)")

    def work(conn: Connection) -> tuple[ApiKey, str]:
        for _ in range(5):  # an 8-hex-digit prefix can collide; pick another
            prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
            taken = conn.execute(sa.select(api_keys.c.id).where(api_keys.c.prefix == prefix)).first()
            if taken is None:
                break
        else:  # pragma: no cover - 5 collisions in a row
            raise ApiKeyError("could not find a free key prefix; try again")
        now = datetime.now(UTC)
        new_id = conn.execute(
            sa.insert(api_keys)
            .values(name=name, prefix=prefix, secret_hash=hash_secret(secret), role=role, created_at=now)
            .returning(api_keys.c.id)
        ).scalar_one()
        _audit(conn, actor, "key.create", f"key:{new_id}", {"name": name, "role": role, "prefix": prefix})
        key = ApiKey(int(new_id), name, prefix, role, now, None)
        return key, f"rfm_{prefix}_{secret}"

    return run_write(engine, work)


def list_keys(engine: Engine) -> list[ApiKey]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.id)).all()
    return [_key(r) for r in rows]


def revoke_key(engine: Engine, key_id: int, *, actor: str) -> ApiKey:
    """Revoke a key (it stops working at once); revoking it again changes nothing."""

    def work(conn: Connection) -> ApiKey:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise ApiKeyError(f"no API key with id {key_id} (see `rfmflow keys list`)")
        if row.revoked_at is not None:
            return _key(row)
        now = datetime.now(UTC)
        conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=now))
        _audit(conn, actor, "key.revoke", f"key:{key_id}", {"name": row.name, "role": row.role})
        return ApiKey(row.id, row.name, row.prefix, row.role, row.created_at, now)

    return run_write(engine, work)


def has_active_admin(engine: Engine) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(api_keys.c.id)
            .where(api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None))
            .limit(1)
        ).first()
    return found is not None


def authenticate(conn: Connection, presented: str) -> ApiKey | None:
    """The active key ``presented`` is, or None (malformed, unknown, wrong secret, revoked)."""
    match = KEY_PATTERN.fullmatch(presented.strip())
    if match is None:
        return None
    prefix, secret = match.groups()
    row = conn.execute(sa.select(api_keys).where(api_keys.c.prefix == prefix)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
        return None
    return _key(row)


def audit_entries(engine: Engine, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest audit-log entries first."""
    with engine.connect() as conn:
        rows = (
            conn.execute(sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)).mappings().all()
        )
    return [dict(r) for r in rows]

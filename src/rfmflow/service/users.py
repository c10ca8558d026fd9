"""Dashboard users: a name, a password (salted scrypt) and one of the API's roles.

Users sign in to the dashboard with a password instead of an API key; they have the role's
permissions there (``admin``, ``analyst`` or ``agent`` — ``ingest`` only sends events). A
disabled user, or one whose password changed, is signed out at their next request. Every change
is written to the audit log. Users cannot call the HTTP API: scripts use API keys.

Passwords are hashed with :func:`hashlib.scrypt` (n=2**14, r=8, p=1, a 16-byte random salt),
stored as ``scrypt$n$r$p$<salt>$<hash>`` (base64), and compared in constant time. An unknown
user costs the same hashing as a wrong password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.core.errors import RfmflowError
from rfmflow.service.db.tables import audit_log, users

USER_ROLES = ("admin", "analyst", "agent")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{1,63}$")
_N, _R, _P = 2**14, 8, 1
_DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 86  # an unknown user costs one hash too


class UserError(RfmflowError):
    """A user cannot be created or changed as asked; the message names the field."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    created_at: datetime
    created_by: str
    disabled_at: datetime | None
    last_login_at: datetime | None
    password_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=64)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password: at most {MAX_PASSWORD} characters")


def _user(row: Any) -> User:
    return User(
        row.id,
        row.username,
        row.role,
        row.created_at,
        row.created_by,
        row.disabled_at,
        row.last_login_at,
        row.password_hash,
    )


def _audit(conn: Connection, at: datetime, actor: str, action: str, username: str, **details: Any) -> None:
    conn.execute(
        sa.insert(audit_log).values(
            at=at, actor=actor, action=action, target=username, details=details or None
        )
    )


def get_user(conn: Connection, username: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.username == username)).first()
    return None if row is None else _user(row)


def get_user_by_id(conn: Connection, user_id: int) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    return None if row is None else _user(row)


def list_users(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.username))]


def create_user(
    conn: Connection, username: str, password: str, role: str, *, actor: str, now: datetime
) -> User:
    """A new user; :class:`UserError` naming the field for a bad name, role or password, or a
    name that is taken."""
    if not _NAME.match(username):
        raise UserError(
            "username: 2 to 64 characters, letters, digits and . _ @ + - (starting with a letter or digit)"
        )
    if role not in USER_ROLES:
        raise UserError(f"role: {role!r} is not one of {', '.join(USER_ROLES)}")
    check_password(password)
    if get_user(conn, username) is not None:
        raise UserError(f"username: {username!r} exists already")
    conn.execute(
        sa.insert(users).values(
            username=username,
            password_hash=hash_password(password),
            role=role,
            created_at=now,
            created_by=actor,
        )
    )
    _audit(conn, now, actor, "user.create", username, role=role)
    found = get_user(conn, username)
    assert found is not None
    return found


def _existing(conn: Connection, username: str) -> User:
    found = get_user(conn, username)
    if found is None:
        raise UserError(f"username: no user {username!r}")
    return found


def set_password(conn: Connection, username: str, password: str, *, actor: str, now: datetime) -> None:
    """A new password (the user's open sessions end)."""
    _existing(conn, username)
    check_password(password)
    conn.execute(
        users.update().where(users.c.username == username).values(password_hash=hash_password(password))
    )
    _audit(conn, now, actor, "user.password", username)


def set_disabled(conn: Connection, username: str, disabled: bool, *, actor: str, now: datetime) -> None:
    """Disable (sessions end, sign-in refused) or enable a user."""
    _existing(conn, username)
    conn.execute(
        users.update().where(users.c.username == username).values(disabled_at=now if disabled else None)
    )
    _audit(conn, now, actor, "user.disable" if disabled else "user.enable", username)


def sign_in(conn: Connection, username: str, password: str, *, now: datetime) -> User | None:
    """The user when the password is right and the user is enabled; None otherwise (the same
    work is done for an unknown user)."""
    found = get_user(conn, username)
    ok = verify_password(password, found.password_hash if found is not None else _DUMMY)
    if found is None or not ok or found.disabled_at is not None:
        return None
    conn.execute(users.update().where(users.c.id == found.id).values(last_login_at=now))
    return found


__all__ = [
    "MIN_PASSWORD",
    "USER_ROLES",
    "User",
    "UserError",
    "check_password",
    "create_user",
    "get_user",
    "get_user_by_id",
    "hash_password",
    "list_users",
    "set_disabled",
    "set_password",
    "sign_in",
    "verify_password",
]

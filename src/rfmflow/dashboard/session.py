"""Dashboard sessions: a signed cookie naming the API key or the user that signed in, checked on
every request.

The cookie holds ``<payload>.<mac>``: the payload (URL-safe base64 of JSON) names the key's
(or user's) id, a fingerprint of the key's stored hash (the user's password hash), when the
session was issued and when it expires, and a random nonce; the MAC is HMAC-SHA256 over it
with the secret key. Neither the API key nor the password is stored in the cookie. On each
request the key is read again from ``api_keys`` (the user from ``users``): a revoked (or
replaced) key, an ``ingest`` key, a disabled user, a changed password or an expired session
ends the session.

The secret is the service's (:mod:`rfmflow.service.secret_key`): ``RFMFLOW_SECRET_KEY`` when
set, else one generated on first use and kept in ``<data dir>/secret_key``. Servers that do not
share a data directory (several machines on one PostgreSQL) must be given the same
``RFMFLOW_SECRET_KEY``.

Forms are protected from cross-site requests by a per-session CSRF token (an HMAC of the
session's nonce), sent back in a hidden field; the sign-in form, which has no session yet,
uses a random token in a short-lived cookie and the same token in the form (double submit).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.service.auth import ApiKey
from rfmflow.service.db.tables import api_keys
from rfmflow.service.users import get_user_by_id

SESSION_COOKIE = "rfmflow_session"
LOGIN_COOKIE = "rfmflow_login"
SESSION_SECONDS = 12 * 3600
"""A session ends this long after sign-in (sign in again)."""
LOGIN_SECONDS = 3600
SIGN_IN_ROLES = ("admin", "analyst", "agent")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


@dataclass(frozen=True)
class Claims:
    """What a valid session cookie says."""

    key_id: int
    fingerprint: str
    issued: int
    expires: int
    nonce: str
    kind: str = "key"  # key or user


@dataclass(frozen=True)
class Session:
    """Who signed in and the session's CSRF token. ``key`` carries the role; for a user it is
    made from the user (``prefix`` ``user``, ``name`` the user name)."""

    key: ApiKey
    claims: Claims
    csrf: str

    def allows(self, permission: str) -> bool:
        return self.key.allows(permission)

    @property
    def actor(self) -> str:
        """How the audit log names who did something: ``key:<id>`` or ``user:<name>``."""
        return f"user:{self.key.name}" if self.claims.kind == "user" else f"key:{self.key.id}"


class Signer:
    """Signs and checks session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode("ascii") + b"\0" + data, hashlib.sha256).digest()

    def fingerprint(self, secret_hash: str) -> str:
        """Ties a session to one key's stored hash (a new key under an old id does not match)."""
        return _b64(self._mac("key", secret_hash.encode("ascii")))[:22]

    def issue(self, key_id: int, secret_hash: str, *, now: int, kind: str = "key") -> tuple[str, Claims]:
        """A cookie for key ``key_id`` (``kind="user"``: for user ``key_id``, ``secret_hash`` being
        the password hash)."""
        claims = Claims(
            key_id, self.fingerprint(secret_hash), now, now + SESSION_SECONDS, secrets.token_hex(16), kind
        )
        fields: list[object] = [
            claims.key_id,
            claims.fingerprint,
            claims.issued,
            claims.expires,
            claims.nonce,
        ]
        if kind != "key":
            fields.append(kind)
        payload = json.dumps(fields, separators=(",", ":")).encode("utf-8")
        body = _b64(payload)
        return f"{body}.{_b64(self._mac('session', body.encode('ascii')))}", claims

    def read(self, cookie: str, *, now: int) -> Claims | None:
        """The claims of a genuine, unexpired cookie; None otherwise."""
        body, _, mac = cookie.partition(".")
        if not body or not mac:
            return None
        try:
            expected = self._mac("session", body.encode("ascii"))
            if not hmac.compare_digest(_unb64(mac), expected):
                return None
            data = json.loads(_unb64(body))
        except (binascii.Error, UnicodeError, ValueError):
            return None
        if not isinstance(data, list) or len(data) not in (5, 6) or (len(data) == 6 and data[5] != "user"):
            return None
        key_id, fingerprint, issued, expires, nonce = data[:5]
        kind = "user" if len(data) == 6 else "key"
        if not (isinstance(key_id, int) and isinstance(issued, int) and isinstance(expires, int)):
            return None
        if not (isinstance(fingerprint, str) and isinstance(nonce, str)) or now >= expires:
            return None
        return Claims(key_id, fingerprint, issued, expires, nonce, kind)

    def csrf(self, nonce: str) -> str:
        return _b64(self._mac("csrf", nonce.encode("ascii")))

    def csrf_ok(self, claims: Claims, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(
            token.encode("utf-8"), self.csrf(claims.nonce).encode()
        )


def session_key(conn: Connection, signer: Signer, claims: Claims) -> ApiKey | None:
    """The session's key when it is still active, still the same key, and may sign in (for a
    user's session: the user, enabled, with the same password, as a key of the user's role)."""
    if claims.kind == "user":
        user = get_user_by_id(conn, claims.key_id)
        if user is None or user.disabled_at is not None or user.role not in SIGN_IN_ROLES:
            return None
        if not hmac.compare_digest(signer.fingerprint(user.password_hash), claims.fingerprint):
            return None
        return ApiKey(user.id, user.username, "user", user.role, user.created_at, None)
    row = conn.execute(sa.select(api_keys).where(api_keys.c.id == claims.key_id)).first()
    if row is None or row.revoked_at is not None or row.role not in SIGN_IN_ROLES:
        return None
    if not hmac.compare_digest(signer.fingerprint(row.secret_hash), claims.fingerprint):
        return None
    return ApiKey(row.id, row.name, row.prefix, row.role, row.created_at, row.revoked_at)


def secret_hash_of(conn: Connection, key_id: int) -> str:
    return str(conn.execute(sa.select(api_keys.c.secret_hash).where(api_keys.c.id == key_id)).scalar_one())


def login_token() -> str:
    return secrets.token_urlsafe(24)


def login_token_ok(cookie: str | None, form: str | None) -> bool:
    if not cookie or not form:
        return False
    return hmac.compare_digest(cookie.encode("utf-8"), form.encode("utf-8"))

"""The service's secret key, and keys derived from it for one purpose each.

The secret is ``RFMFLOW_SECRET_KEY`` when set, else one generated on first use and kept in
``<data dir>/secret_key`` (mode 0600; created atomically, so processes sharing the data
directory agree on one); the dashboard's sessions use it too. Servers and
workers that do not share a data directory must be given the same ``RFMFLOW_SECRET_KEY``.

Each use signs with its own key, :func:`derived_key` (HMAC-SHA256 of the purpose under the
secret), so a value signed for one purpose (an unsubscribe link) is never valid for another
(a session cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from rfmflow.service.settings import MIN_SECRET_KEY_LENGTH, Settings, SettingsError

SECRET_FILE = "secret_key"


def load_secret_key(settings: Settings) -> bytes:
    """``RFMFLOW_SECRET_KEY``, else the generated secret kept in the data directory."""
    if settings.secret_key:
        return settings.secret_key.encode("utf-8")
    path = Path(settings.data_dir) / SECRET_FILE
    existing = _read(path)
    if existing is not None:
        return existing
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(temp, path)  # atomic: the first process to link wins, the others read its secret
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    except OSError as err:
        raise SettingsError(
            f"RFMFLOW_SECRET_KEY is not set and {path} cannot be written ({err.strerror}); "
            "set RFMFLOW_SECRET_KEY to 32 or more random characters"
        ) from None
    found = _read(path)
    if found is None:
        raise SettingsError(f"{path}: the secret key is shorter than {MIN_SECRET_KEY_LENGTH} characters")
    return found


def _read(path: Path) -> bytes | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return text.encode("ascii") if len(text) >= MIN_SECRET_KEY_LENGTH else None


def derived_key(secret: bytes, purpose: str) -> bytes:
    """A key for one ``purpose`` (``"links"``), derived from the service's secret."""
    return hmac.new(secret, b"rfmflow derived key\0" + purpose.encode("ascii"), hashlib.sha256).digest()


__all__ = ["SECRET_FILE", "derived_key", "load_secret_key"]

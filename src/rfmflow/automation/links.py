"""Signed links in messages: unsubscribe (``/u/<token>``) and tracked clicks (``/l/<token>``).

A token is ``<payload>.<mac>``: the payload (URL-safe base64, no padding) names what the link
is for, the MAC is HMAC-SHA256 (first 16 bytes) over the payload and its kind with a key derived
from the service's secret (:func:`rfmflow.service.secret_key.derived_key`, purpose ``links``).
Nothing can be changed in a token without the secret, so a click link cannot become an open
redirect and an unsubscribe link cannot opt out someone else.

- **unsubscribe**: the outbox row (the message) and the channel. The dispatcher hands the
  sender the outbox id, and the row names the customer; keeping the customer's id out of the URL
  also keeps personal data (an id may be an e-mail address) out of mail logs and proxies.
- **click**: the outbox row and the target URL.

Templates use ``{{ unsubscribe_url }}``: it renders as :data:`UNSUBSCRIBE_MARK`, which the
sender replaces with the message's link when it sends (the outbox id exists only then).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

UNSUBSCRIBE_MARK = "rfmflow-unsubscribe-url"
"""What ``{{ unsubscribe_url }}`` renders as until the message is sent."""

_MAC_BYTES = 16
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'`]+")
_HREF = re.compile(r"""(href\s*=\s*)(["'])(https?://[^"'\s<>]+)\2""", re.IGNORECASE)
_TRAILING = ".,;:!?)]}"


class BadToken(ValueError):
    """A link token that is malformed or not signed by this installation."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise BadToken("the link is damaged (not valid base64)") from None


@dataclass(frozen=True)
class Unsubscribe:
    outbox_id: int
    channel: str


@dataclass(frozen=True)
class Click:
    outbox_id: int
    url: str


class LinkSigner:
    """Makes and reads the tokens of one installation (``key``: the derived links key)."""

    def __init__(self, key: bytes, public_url: str) -> None:
        if len(key) < 16:
            raise ValueError("the links key is too short")
        self._key = key
        self.public_url = public_url.rstrip("/")

    def _mac(self, kind: str, payload: bytes) -> bytes:
        return hmac.new(self._key, kind.encode("ascii") + b"\0" + payload, hashlib.sha256).digest()[
            :_MAC_BYTES
        ]

    def _sign(self, kind: str, payload: bytes) -> str:
        return f"{_b64(payload)}.{_b64(self._mac(kind, payload))}"

    def _open(self, kind: str, token: str) -> bytes:
        body, dot, mac = token.partition(".")
        if not dot or not body or not mac or len(token) > 4096:
            raise BadToken("the link is incomplete")
        payload = _unb64(body)
        if not hmac.compare_digest(_unb64(mac), self._mac(kind, payload)):
            raise BadToken("the link's signature does not match (it was changed or is not ours)")
        return payload

    # unsubscribe
    def unsubscribe_token(self, outbox_id: int, channel: str) -> str:
        return self._sign("u", f"{outbox_id}\0{channel}".encode())

    def unsubscribe_url(self, outbox_id: int, channel: str) -> str:
        return f"{self.public_url}/u/{self.unsubscribe_token(outbox_id, channel)}"

    def read_unsubscribe(self, token: str) -> Unsubscribe:
        oid, _, channel = self._open("u", token).decode("utf-8", "replace").partition("\0")
        if not oid.isdigit() or not channel:
            raise BadToken("the link names no message")
        return Unsubscribe(int(oid), channel)

    # clicks
    def click_token(self, outbox_id: int, url: str) -> str:
        return self._sign("l", f"{outbox_id}\0{url}".encode())

    def click_url(self, outbox_id: int, url: str) -> str:
        return f"{self.public_url}/l/{self.click_token(outbox_id, url)}"

    def read_click(self, token: str) -> Click:
        oid, _, url = self._open("l", token).decode("utf-8", "replace").partition("\0")
        if not oid.isdigit() or not url.startswith(("http://", "https://")):
            raise BadToken("the link names no message or target")
        return Click(int(oid), url)

    # rewriting a message's links
    def is_ours(self, url: str) -> bool:
        return url.startswith(self.public_url + "/")

    def track_text(self, text: str, outbox_id: int) -> str:
        """Every http(s) URL in plain ``text`` through the click link (ours are left alone)."""
        return _rewrite_text(text, lambda url: url if self.is_ours(url) else self.click_url(outbox_id, url))

    def track_html(self, html: str, outbox_id: int) -> str:
        """Every ``href="http..."`` in ``html`` through the click link (images are left alone)."""

        def swap(match: re.Match[str]) -> str:
            url = match.group(3).replace("&amp;", "&")
            if self.is_ours(url):
                return match.group(0)
            quote = match.group(2)
            return f"{match.group(1)}{quote}{self.click_url(outbox_id, url)}{quote}"

        return _HREF.sub(swap, html)


def _rewrite_text(text: str, change: Callable[[str], str]) -> str:
    def swap(match: re.Match[str]) -> str:
        url = match.group(0)
        tail = ""
        while url and url[-1] in _TRAILING:  # "see https://x.example/a." keeps its full stop
            tail = url[-1] + tail
            url = url[:-1]
        return change(url) + tail

    return _URL_IN_TEXT.sub(swap, text)


__all__ = ["UNSUBSCRIBE_MARK", "BadToken", "Click", "LinkSigner", "Unsubscribe"]

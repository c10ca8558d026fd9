"""The automation engine's settings (``RFMFLOW_`` environment variables), checked when read.

=====================================  ==========  ===============================================
variable                               default     what
=====================================  ==========  ===============================================
``RFMFLOW_QUIET_HOURS``                (off)       ``21:00-09:00``: no message is sent in this
                                                   period of the customer's local time (their
                                                   profile's zone, else the business zone); a
                                                   row due then waits for its end
``RFMFLOW_FREQUENCY_CAPS``             (none)      ``telegram:2/30d;email:4/30d``: at most N
                                                   messages per customer and channel in the
                                                   window; ``At Risk/telegram:1/7d`` caps one
                                                   segment's customers
``RFMFLOW_FEED_OVERLAP``               ``10m``     how far back each feed is re-read (commits
                                                   land out of order); handled idempotently
``RFMFLOW_SEND_LEASE``                 ``5m``      a row in ``sending`` longer than this (the
                                                   worker died mid-send) becomes ``unknown``
``RFMFLOW_TELEGRAM_BOT_TOKEN``         (none)      the bot (the service's setting, shared with
``RFMFLOW_TELEGRAM_API_URL``                       the bot runtime); without a token Telegram
                                                   rows wait
``RFMFLOW_SMTP_HOST`` / ``_PORT``      (none)/25   the SMTP server; without a host e-mail waits
``RFMFLOW_SMTP_FROM``                  ``rfmflow@localhost``
``RFMFLOW_AUTOMATION_WEBHOOK_URL``     (none)      where ``webhook`` send steps post
``RFMFLOW_AUTOMATION_WEBHOOK_SECRET``  (none)      signs them (``X-Rfmflow-Signature``)
``RFMFLOW_PUBLIC_URL``                 (service)   the root of the unsubscribe and tracked links
                                                   (the service's setting); the links are signed
                                                   with a key derived from the service's secret
``RFMFLOW_TRACK_LINKS``                ``on``      ``off``: leave the URLs in messages as written
=====================================  ==========  ===============================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta

from rfmflow.automation.links import LinkSigner
from rfmflow.core.errors import RfmflowError
from rfmflow.service.settings import Settings

PREFIX = "RFMFLOW_"
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_CAP = re.compile(
    r"^\s*(?:(?P<segment>[^/:;]+)/)?(?P<channel>[a-z]+)\s*:\s*(?P<n>\d+)\s*/\s*(?P<window>\d+\s*[smhdw])\s*$"
)


class AutomationSettingsError(RfmflowError):
    """An automation setting has an invalid value; the message names the variable."""


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class Cap:
    """At most ``limit`` messages on ``channel`` per customer within ``window``
    (``segment``: only for customers in that segment)."""

    channel: str
    limit: int
    window: timedelta
    segment: str | None = None


@dataclass(frozen=True)
class AutomationSettings:
    quiet_hours: QuietHours | None = None
    caps: tuple[Cap, ...] = ()
    feed_overlap: timedelta = timedelta(minutes=10)
    send_lease: timedelta = timedelta(minutes=5)
    telegram_token: str = field(default="", repr=False)
    telegram_api_url: str | None = None
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "rfmflow@localhost"
    webhook_url: str = ""
    webhook_secret: str = field(default="", repr=False)
    public_url: str = ""
    """Where customers reach the service (``/u/...`` and ``/l/...``); empty = no links."""
    links_key: bytes = field(default=b"", repr=False)
    """Signs the unsubscribe and click links (derived from the service's secret); empty = none."""
    track_links: bool = True
    """Route the URLs in e-mails and Telegram buttons through ``/l/...`` to count clicks."""

    def link_signer(self) -> LinkSigner | None:
        """The signer of this installation's links, or ``None`` when links are not configured."""
        if not self.links_key or not self.public_url:
            return None
        return LinkSigner(self.links_key, self.public_url)


def parse_duration(text: str, variable: str) -> timedelta:
    m = _DURATION.match(text)
    if not m:
        raise AutomationSettingsError(f"{variable}: expected a duration like 30s, 10m, 2h, 30d; got {text!r}")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def parse_quiet_hours(text: str, variable: str = f"{PREFIX}QUIET_HOURS") -> QuietHours | None:
    if not text.strip() or text.strip().lower() == "off":
        return None
    m = _QUIET.match(text)
    if not m:
        raise AutomationSettingsError(
            f"{variable}: expected HH:MM-HH:MM (e.g. 21:00-09:00) or off; got {text!r}"
        )
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise AutomationSettingsError(f"{variable}: {text!r} is not a time of day range")
    if (h1, m1) == (h2, m2):
        raise AutomationSettingsError(f"{variable}: {text!r} starts and ends at the same time")
    return QuietHours(time(h1, m1), time(h2, m2))


def parse_caps(text: str, variable: str = f"{PREFIX}FREQUENCY_CAPS") -> tuple[Cap, ...]:
    from rfmflow.automation.definition import CHANNELS

    caps = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        m = _CAP.match(part)
        if not m:
            raise AutomationSettingsError(
                f"{variable}: {part!r}: expected CHANNEL:N/WINDOW (e.g. telegram:2/30d), "
                "optionally SEGMENT/ before it"
            )
        if m["channel"] not in CHANNELS:
            raise AutomationSettingsError(
                f"{variable}: {part!r}: unknown channel {m['channel']!r} (known: {', '.join(CHANNELS)})"
            )
        segment = m["segment"].strip() if m["segment"] else None
        caps.append(Cap(m["channel"], int(m["n"]), parse_duration(m["window"], variable), segment))
    return tuple(caps)


def load_automation_settings(
    environ: Mapping[str, str] | None = None, service: Settings | None = None
) -> AutomationSettings:
    """The settings from the environment; the Telegram bot's, the public URL and the links key
    (derived from the secret key) from the service's ``service``."""
    env = os.environ if environ is None else environ

    def get(name: str, default: str = "") -> str:
        return env.get(PREFIX + name, default).strip()

    track = get("TRACK_LINKS", "on").lower()
    if track not in ("on", "off", "true", "false", "1", "0"):
        raise AutomationSettingsError(f"{PREFIX}TRACK_LINKS: expected on or off; got {track!r}")
    public_url, links_key = "", b""
    if service is not None:
        from rfmflow.service.secret_key import derived_key, load_secret_key

        public_url, links_key = service.public_url, derived_key(load_secret_key(service), "links")
    port = get("SMTP_PORT", "25")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise AutomationSettingsError(f"{PREFIX}SMTP_PORT: {port!r} is not a port number")
    return AutomationSettings(
        quiet_hours=parse_quiet_hours(get("QUIET_HOURS")),
        caps=parse_caps(get("FREQUENCY_CAPS")),
        feed_overlap=parse_duration(get("FEED_OVERLAP", "10m"), f"{PREFIX}FEED_OVERLAP"),
        send_lease=parse_duration(get("SEND_LEASE", "5m"), f"{PREFIX}SEND_LEASE"),
        telegram_token=service.telegram_bot_token if service is not None else get("TELEGRAM_BOT_TOKEN"),
        telegram_api_url=(service.telegram_api_url if service is not None else get("TELEGRAM_API_URL"))
        or None,
        smtp_host=get("SMTP_HOST"),
        smtp_port=int(port),
        smtp_from=get("SMTP_FROM", "rfmflow@localhost"),
        webhook_url=get("AUTOMATION_WEBHOOK_URL"),
        webhook_secret=get("AUTOMATION_WEBHOOK_SECRET"),
        public_url=public_url,
        links_key=links_key,
        track_links=track in ("on", "true", "1"),
    )


__all__ = [
    "AutomationSettings",
    "AutomationSettingsError",
    "Cap",
    "QuietHours",
    "load_automation_settings",
    "parse_caps",
    "parse_duration",
    "parse_quiet_hours",
]

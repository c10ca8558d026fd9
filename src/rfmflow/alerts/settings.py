"""Alert and report settings (``RFMFLOW_`` environment variables), checked when read.

======================================  =====================  ============================================
variable                                default                what
======================================  =====================  ============================================
``RFMFLOW_ALERTS_INTERVAL``             ``60s``                how often ``serve`` (and ``worker``) evaluate
                                                               the rules and send; ``off``: not in this
                                                               process. A finished scoring run is noticed
                                                               within ``10s`` and evaluated at once
``RFMFLOW_ALERTS_WEBHOOK_SECRET``       the automation's       signs alert webhooks (``X-Rfmflow-Signature``)
                                        webhook secret
``RFMFLOW_REPORT_SCHEDULE``             ``weekly mon 08:00``   when the weekly report is made and sent, in
                                                               the business time zone: ``weekly DAY HH:MM``,
                                                               ``daily HH:MM``, a 5-field cron or ``off``
``RFMFLOW_REPORT_TELEGRAM_CHAT``        (none)                 a chat id (or ``@channel``) it goes to
``RFMFLOW_REPORT_EMAILS``               (none)                 addresses it goes to, comma separated
``RFMFLOW_DASHBOARD_URL``               ``http://HOST:PORT``   the dashboard's address, for links in messages
======================================  =====================  ============================================

Telegram and e-mail go through the automation's channel settings (``RFMFLOW_TELEGRAM_BOT_TOKEN``,
``RFMFLOW_TELEGRAM_API_URL``, ``RFMFLOW_SMTP_*``); without them those alerts wait (``pending``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rfmflow.alerts.rules import RuleError, check_target
from rfmflow.automation.settings import AutomationSettings, load_automation_settings, parse_duration
from rfmflow.core.errors import RfmflowError
from rfmflow.service.scoring_jobs import Schedule, parse_schedule
from rfmflow.service.settings import PREFIX, Settings

DEFAULT_REPORT_SCHEDULE = "weekly mon 08:00"
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKLY = re.compile(r"^weekly\s+([a-z]{3})[a-z]*\s+(\d{1,2}):(\d{2})$")


class AlertSettingsError(RfmflowError):
    """An alert or report setting has an invalid value; the message names the variable."""


@dataclass(frozen=True)
class AlertSettings:
    interval: float | None = 60.0
    """Seconds between evaluations in a long-running process; None: no loop here."""
    poll: float = 10.0
    """Seconds between looks for a newly finished scoring run."""
    webhook_secret: str = field(default="", repr=False)
    report_schedule: Schedule = field(default_factory=lambda: parse_report_schedule(DEFAULT_REPORT_SCHEDULE))
    report_telegram_chat: str = ""
    report_emails: tuple[str, ...] = ()
    dashboard_url: str = ""
    automation: AutomationSettings = field(default_factory=AutomationSettings)
    """The channels (Telegram bot, SMTP) and the send lease."""

    @property
    def report_targets(self) -> list[tuple[str, str]]:
        out = [("telegram", self.report_telegram_chat)] if self.report_telegram_chat else []
        return out + [("email", address) for address in self.report_emails]


def parse_report_schedule(text: str) -> Schedule:
    """``weekly DAY HH:MM`` (``mon``..``sun``) besides what the scoring schedule takes."""
    clean = " ".join(text.strip().lower().split())
    m = _WEEKLY.match(clean)
    if m:
        day, hh, mm = m.group(1), int(m.group(2)), int(m.group(3))
        if day not in DAYS:
            raise ValueError(f"{text.strip()!r}: unknown day {day!r} (mon, tue, ..., sun)")
        if hh > 23 or mm > 59:
            raise ValueError(f"{text.strip()!r}: {hh}:{mm:02d} is not a time of day")
        found = parse_schedule(f"{mm} {hh} * * {DAYS.index(day)}")
        return Schedule(
            clean,
            found.minutes,
            found.hours,
            found.days,
            found.months,
            found.weekdays,
            found.any_day,
            found.any_weekday,
        )
    if clean.startswith("weekly"):
        raise ValueError(f"{text.strip()!r}: expected 'weekly DAY HH:MM' (e.g. weekly mon 08:00)")
    return parse_schedule(text)


def load_alert_settings(
    service: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    automation: AutomationSettings | None = None,
) -> AlertSettings:
    env = os.environ if environ is None else environ

    def get(name: str, default: str = "") -> str:
        return env.get(PREFIX + name, default).strip()

    auto = automation or load_automation_settings(env, service)
    interval_text = get("ALERTS_INTERVAL", "60s")
    interval = (
        None
        if interval_text.lower() == "off"
        else parse_duration(interval_text, f"{PREFIX}ALERTS_INTERVAL").total_seconds()
    )
    try:
        schedule = parse_report_schedule(get("REPORT_SCHEDULE") or DEFAULT_REPORT_SCHEDULE)
    except ValueError as err:
        raise AlertSettingsError(f"{PREFIX}REPORT_SCHEDULE: {err}") from None
    chat = get("REPORT_TELEGRAM_CHAT")
    emails = tuple(a.strip() for a in get("REPORT_EMAILS").split(",") if a.strip())
    try:
        if chat:
            check_target("telegram", chat)
        for address in emails:
            check_target("email", address)
    except RuleError as err:
        name = "REPORT_TELEGRAM_CHAT" if err.reason.find("Telegram") >= 0 else "REPORT_EMAILS"
        raise AlertSettingsError(f"{PREFIX}{name}: {err.reason}") from None
    dashboard = get("DASHBOARD_URL") or f"http://{service.host}:{service.port}"
    return AlertSettings(
        interval=interval,
        webhook_secret=get("ALERTS_WEBHOOK_SECRET") or auto.webhook_secret,
        report_schedule=schedule,
        report_telegram_chat=chat,
        report_emails=emails,
        dashboard_url=dashboard.rstrip("/"),
        automation=auto,
    )


__all__ = [
    "DEFAULT_REPORT_SCHEDULE",
    "AlertSettings",
    "AlertSettingsError",
    "load_alert_settings",
    "parse_report_schedule",
]

"""Sending alerts (and reports) to operators, the way the outbox sends to customers.

The senders are the automation's (:class:`~rfmflow.automation.senders.ChannelSenders`: the
Telegram bot over python-telegram-bot, SMTP) plus a signed webhook whose URL is each rule's
target (:class:`~rfmflow.channels.webhook.WebhookSender`, signed with
``RFMFLOW_ALERTS_WEBHOOK_SECRET``). Alerts go to the operator's address on the rule, never to a
customer, so consent, quiet hours and caps do not apply.

:func:`deliver_pending`: (1) occurrences left ``sending`` past the lease become ``unknown``;
(2) due ``pending`` ones are claimed (``sending``) and that is committed; (3) each is sent and
its outcome recorded (:mod:`rfmflow.alerts.store`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from markupsafe import escape
from sqlalchemy.engine import Engine

from rfmflow.alerts.settings import AlertSettings
from rfmflow.alerts.store import Claimed, claim, counts_by_status, record, recover_expired
from rfmflow.automation.senders import ChannelSenders, SendFn
from rfmflow.channels.outbound import SendOutcome
from rfmflow.service.db.engine import run_write


def alert_senders(settings: AlertSettings, *, custom: Mapping[str, SendFn] | None = None) -> ChannelSenders:
    """The channels alerts and reports go through (open it with ``async with``)."""
    chosen = dict(custom or {})
    if "webhook" not in chosen:
        chosen["webhook"] = _webhook_sender(settings.webhook_secret)
    return ChannelSenders(settings.automation, custom=chosen)


def _webhook_sender(secret: str) -> SendFn:
    from rfmflow.channels.webhook import WebhookMessage, WebhookSender

    sender = WebhookSender(attempts=2, first_delay=0.5)

    async def send(mid: str, url: str, message: Mapping[str, Any]) -> SendOutcome:
        payload = {"id": mid, **dict(message.get("payload") or {})}
        return await sender.send(WebhookMessage(id=mid, url=url, payload=payload, secret=secret))

    return send


def alert_message(item: Claimed, dashboard_url: str) -> dict[str, Any]:
    """What the channel gets: text (Telegram), subject/text/html (e-mail), payload (webhook)."""
    link = f"{dashboard_url}/alerts" if dashboard_url else ""
    text = f"⚠️ {item.title}\n{item.message}\nRule: {item.rule_name}" + (f"\n{link}" if link else "")
    html = (
        f"<p><strong>{escape(item.title)}</strong></p><p>{escape(item.message)}</p>"
        f"<p>Rule: {escape(item.rule_name)}</p>"
        + (f'<p><a href="{escape(link)}">Alerts</a></p>' if link else "")
    )
    return {
        "text": text,
        "subject": f"[rfmflow] {item.title}",
        "html": html,
        "payload": {
            "type": "alert",
            "alert_id": item.id,
            "rule": item.rule_name,
            "title": item.title,
            "message": item.message,
            "details": item.details,
        },
    }


async def deliver_pending(
    engine: Engine, senders: ChannelSenders, settings: AlertSettings, *, now: datetime | None = None
) -> dict[str, Any]:
    """Recover expired leases, claim the due occurrences, send them, record the outcomes."""
    at = now or datetime.now(UTC)
    lease = settings.automation.send_lease
    with engine.connect() as conn:
        busy = counts_by_status(conn)
    if not busy.get("pending") and not busy.get("sending"):
        return {"claimed": 0, "outcomes": {}, "unknown_recovered": 0}
    recovered = await asyncio.to_thread(run_write, engine, lambda c: recover_expired(c, at, lease))
    claimed = await asyncio.to_thread(run_write, engine, lambda c: claim(c, at, senders.channels))
    outcomes: dict[str, int] = {}

    async def one(item: Claimed) -> None:
        message = alert_message(item, settings.dashboard_url)
        try:
            outcome = await senders.send(
                item.channel, f"alert-{item.id}-{item.attempt}", item.target, message
            )
        except Exception as err:  # the sender broke: it may have sent; never resend blindly
            outcome = SendOutcome(str(item.id), "unknown", reason=f"the sender failed: {err}")
        done = datetime.now(UTC) if now is None else at
        status = await asyncio.to_thread(run_write, engine, lambda c: record(c, item, outcome, done))
        outcomes[status] = outcomes.get(status, 0) + 1

    await asyncio.gather(*(one(item) for item in claimed))
    return {"claimed": len(claimed), "outcomes": outcomes, "unknown_recovered": recovered}


__all__ = ["alert_message", "alert_senders", "deliver_pending"]

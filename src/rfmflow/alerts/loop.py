"""The alerts loop: evaluate the rules, send what fired, make and send the scheduled report.

:func:`tick` is one pass; :func:`run_forever` repeats it every ``RFMFLOW_ALERTS_INTERVAL``
(and at once when a scoring run has finished since the last pass, looked for every
``poll`` seconds) until ``stop`` is set. ``rfmflow serve`` runs it in process (registered by
:mod:`rfmflow.alerts.routes`); a worker process runs ``run_forever(engine, settings, stop)``.
Several processes may run it at once: occurrences and reports are unique rows and every send
is claimed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rfmflow.alerts.delivery import alert_senders, deliver_pending
from rfmflow.alerts.evaluation import evaluate_rules, latest_run_id
from rfmflow.alerts.reports import JOB, report_due, send_due_reports
from rfmflow.alerts.settings import AlertSettings, load_alert_settings
from rfmflow.alerts.store import list_rules
from rfmflow.automation.senders import ChannelSenders
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import jobs
from rfmflow.service.settings import Settings

log = logging.getLogger("rfmflow.alerts")


def evaluate(engine: Engine, now: datetime | None = None) -> list[dict[str, Any]]:
    """Evaluate every enabled rule now and record the occurrences (no sending)."""
    at = now or datetime.now(UTC)
    with engine.connect() as conn:
        if not list_rules(conn, enabled_only=True):
            return []  # no write transaction when there is nothing to evaluate
    return [f.as_dict() for f in run_write(engine, lambda c: evaluate_rules(c, at))]


async def tick(
    engine: Engine,
    settings: Settings,
    alerts: AlertSettings,
    senders: ChannelSenders,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One pass: evaluate, deliver, make the report if due, send reports."""
    at = now or datetime.now(UTC)
    fired = await asyncio.to_thread(evaluate, engine, at)
    delivered = await deliver_pending(engine, senders, alerts, now=now)
    report = None
    if await asyncio.to_thread(_report_work, engine, alerts, at):
        report = await asyncio.to_thread(run_write, engine, lambda c: report_due(c, settings, alerts, at))
    reports_sent = await send_due_reports(engine, senders, alerts, now=now)
    return {
        "fired": fired,
        "new": sum(1 for f in fired if f["new"]),
        "delivery": delivered,
        "report": report,
        "reports_sending": reports_sent,
    }


async def run_forever(
    engine: Engine,
    settings: Settings,
    stop: asyncio.Event,
    *,
    alerts: AlertSettings | None = None,
    senders: ChannelSenders | None = None,
) -> None:
    """Tick every ``interval`` seconds, and soon after each finished scoring run, until ``stop``."""
    chosen = alerts or load_alert_settings(settings)
    interval = chosen.interval or 60.0
    seen_run: int | None = -1
    last = 0.0
    async with senders or alert_senders(chosen) as opened:
        while not stop.is_set():
            try:
                run_id = await asyncio.to_thread(_latest_run, engine)
                if run_id != seen_run or time.monotonic() - last >= interval:
                    seen_run, last = run_id, time.monotonic()
                    result = await tick(engine, settings, chosen, opened)
                    if result["new"] or result["delivery"]["claimed"] or result["report"]:
                        log.info("alerts tick", extra={"result": result})
            except Exception:
                log.exception("alerts tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(chosen.poll, interval))


def _report_work(engine: Engine, alerts: AlertSettings, now: datetime) -> bool:
    """Whether :func:`report_due` has something to write (read first: no write lock for nothing)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.name == JOB)).first()
    if row is None or row.schedule != alerts.report_schedule.text:
        return True
    return row.next_run_at is not None and row.next_run_at <= now


def _latest_run(engine: Engine) -> int | None:
    with engine.connect() as conn:
        return latest_run_id(conn)


__all__ = ["evaluate", "run_forever", "tick"]

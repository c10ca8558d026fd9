"""Weekly reports: made on a schedule (or on demand), kept in ``reports``, sent to their targets.

**Once per period.** The schedule (``RFMFLOW_REPORT_SCHEDULE``) lives in the ``jobs`` row
``weekly_report``: its ``next_run_at`` is the next due moment, set when the row is first made
(so a new installation sends its first report at the first scheduled moment, not at once).
When it is due, one transaction makes the report for the period ending at that moment, inserts
it (``reports`` is unique by ``kind, period_end``) and moves ``next_run_at`` on: a process that
dies before the commit leaves it due, and two processes cannot both make it.

**Deliveries** (``reports.deliveries``: one entry per target, ``telegram:<chat>`` or
``email:<address>``) go like alerts: ``pending`` → ``sending`` (committed) → ``sent``; a
refused send is ``pending`` again (:data:`~rfmflow.alerts.store.MAX_ATTEMPTS` attempts, then
``failed``); no answer, or a lease that expired while ``sending``, is ``unknown`` and never
sent again. Telegram gets a short text summary with a link to the page (the Bot API fake the
tests use takes no uploads, so the page is not attached); e-mail gets the page as its HTML body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from rfmflow.alerts.report_data import summary_text, weekly_summary
from rfmflow.alerts.report_html import render_report
from rfmflow.alerts.settings import AlertSettings
from rfmflow.alerts.store import BACKOFF, MAX_ATTEMPTS
from rfmflow.automation.senders import ChannelSenders
from rfmflow.channels.outbound import SendOutcome
from rfmflow.core.errors import RfmflowError
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.store import insert_or_ignore
from rfmflow.service.db.tables import jobs, reports
from rfmflow.service.scoring_jobs import Schedule
from rfmflow.service.settings import Settings

JOB = "weekly_report"
KIND = "weekly"


class ReportNotFound(RfmflowError):
    def __init__(self, report_id: int) -> None:
        super().__init__(f"no report {report_id}")


def _deliveries(targets: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"channel": ch, "target": t, "status": "pending", "attempts": 0, "at": None, "error": None}
        for ch, t in targets
    ]


def make_report(
    conn: Connection,
    settings: Settings,
    alerts: AlertSettings,
    period_end: datetime,
    *,
    trigger: str,
    targets: Sequence[tuple[str, str]] = (),
    now: datetime | None = None,
) -> tuple[int, bool]:
    """Make and store the report for the period ending at ``period_end``: its id, and whether
    it is new (a report for that period already there is kept as it is)."""
    summary = {**weekly_summary(conn, settings, period_end), "trigger": trigger}
    page = render_report(summary, dashboard_url=alerts.dashboard_url)
    inserted = insert_or_ignore(
        conn,
        reports,
        {
            "kind": KIND,
            "period_start": period_end - timedelta(days=7),
            "period_end": period_end,
            "generated_at": now or datetime.now(UTC),
            "summary": summary,
            "html": page,
            "deliveries": _deliveries(targets),
        },
    )
    found = conn.execute(
        sa.select(reports.c.id).where(reports.c.kind == KIND, reports.c.period_end == period_end)
    ).scalar_one()
    return int(found), inserted


def report_due(conn: Connection, settings: Settings, alerts: AlertSettings, now: datetime) -> int | None:
    """Make the scheduled report if one is due (see the module doc); its id, else None."""
    schedule: Schedule = alerts.report_schedule
    query = sa.select(jobs).where(jobs.c.name == JOB)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    upcoming = schedule.next_after(now, settings.zone)
    if row is None:
        insert_or_ignore(conn, jobs, {"name": JOB, "schedule": schedule.text, "next_run_at": upcoming})
        return None
    if row.schedule != schedule.text:
        conn.execute(
            sa.update(jobs).where(jobs.c.name == JOB).values(schedule=schedule.text, next_run_at=upcoming)
        )
        return None
    due: datetime | None = row.next_run_at
    if due is None or due > now:
        return None
    report_id, _new = make_report(
        conn, settings, alerts, due, trigger="schedule", targets=alerts.report_targets, now=now
    )
    conn.execute(
        sa.update(jobs)
        .where(jobs.c.name == JOB)
        .values(next_run_at=upcoming, last_run_id=report_id, last_error=None)
    )
    return report_id


def next_report_at(conn: Connection) -> datetime | None:
    found: datetime | None = conn.execute(sa.select(jobs.c.next_run_at).where(jobs.c.name == JOB)).scalar()
    return found


# --- reading ------------------------------------------------------------------------------------
def report_json(row: Any, *, with_summary: bool = True) -> dict[str, Any]:
    out = {
        "id": int(row.id),
        "kind": row.kind,
        "period_start": row.period_start.isoformat(),
        "period_end": row.period_end.isoformat(),
        "generated_at": row.generated_at.isoformat(),
        "deliveries": list(row.deliveries or []),
        "html_url": f"/v1/reports/{int(row.id)}.html",
    }
    if with_summary:
        out["summary"] = row.summary
    return out


def list_reports(conn: Connection, *, limit: int = 50) -> list[dict[str, Any]]:
    r = reports.c
    rows = conn.execute(
        sa.select(r.id, r.kind, r.period_start, r.period_end, r.generated_at, r.deliveries, r.summary)
        .order_by(r.period_end.desc(), r.id.desc())
        .limit(limit)
    ).all()
    return [report_json(row) for row in rows]


def get_report(conn: Connection, report_id: int) -> Any:
    row = conn.execute(sa.select(reports).where(reports.c.id == report_id)).first()
    if row is None:
        raise ReportNotFound(report_id)
    return row


# --- sending ------------------------------------------------------------------------------------
def _update_deliveries(engine: Engine, report_id: int, change: Callable[[list[dict[str, Any]]], Any]) -> Any:
    def work(conn: Connection) -> Any:
        query = sa.select(reports.c.deliveries).where(reports.c.id == report_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        entries = [dict(e) for e in conn.execute(query).scalar() or []]
        result = change(entries)
        conn.execute(sa.update(reports).where(reports.c.id == report_id).values(deliveries=entries))
        return result

    return run_write(engine, work)


def _due(entry: dict[str, Any], now: datetime) -> bool:
    if entry["status"] != "pending":
        return False
    attempts = int(entry["attempts"])
    if attempts == 0 or not entry["at"]:
        return True
    return datetime.fromisoformat(entry["at"]) + BACKOFF[min(attempts, len(BACKOFF)) - 1] <= now


def _claim(entries: list[dict[str, Any]], now: datetime, lease: timedelta, channels: set[str]) -> list[int]:
    claimed = []
    for i, entry in enumerate(entries):
        if entry["status"] == "sending" and datetime.fromisoformat(entry["at"]) < now - lease:
            entry.update(status="unknown", error="the process stopped while sending it; not sent again")
        elif _due(entry, now):
            if entry["channel"] not in channels:
                entry["error"] = f"the {entry['channel']} channel is not configured"
                continue
            entry.update(
                status="sending", attempts=int(entry["attempts"]) + 1, at=now.isoformat(), error=None
            )
            claimed.append(i)
    return claimed


def _outcome(entry: dict[str, Any], outcome: SendOutcome, attempt: int, at: datetime) -> None:
    if entry["status"] != "sending" or int(entry["attempts"]) != attempt:
        return
    if outcome.status == "delivered":
        entry.update(status="sent", at=(outcome.sent_at or at).isoformat(), error=None)
    elif outcome.status in ("deferred", "failed") and attempt < MAX_ATTEMPTS:
        entry.update(status="pending", error=outcome.reason)
    elif outcome.status in ("deferred", "failed", "blocked"):
        entry.update(status="failed", error=outcome.reason)
    else:
        entry.update(status="unknown", error=outcome.reason)


def report_message(row: Any, alerts: AlertSettings) -> dict[str, Any]:
    link = f"{alerts.dashboard_url}/reports/{int(row.id)}.html" if alerts.dashboard_url else ""
    summary = row.summary
    return {
        "text": summary_text(summary, link),
        "subject": f"rfmflow weekly report {summary['from']} – {summary['to']}",
        "html": row.html,
        "payload": {"type": "report", "report_id": int(row.id), "summary": summary},
    }


async def send_report(
    engine: Engine,
    report_id: int,
    senders: ChannelSenders,
    alerts: AlertSettings,
    *,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Send the report's due deliveries; the deliveries afterwards."""
    at = now or datetime.now(UTC)
    lease = alerts.automation.send_lease
    claimed: list[int] = await asyncio.to_thread(
        _update_deliveries, engine, report_id, lambda e: _claim(e, at, lease, senders.channels)
    )
    if claimed:
        with engine.connect() as conn:
            row = get_report(conn, report_id)
        message = report_message(row, alerts)
        entries = [dict(e) for e in row.deliveries]

        async def one(i: int) -> None:
            entry = entries[i]
            mid = f"report-{report_id}-{i}-{entry['attempts']}"
            try:
                outcome = await senders.send(entry["channel"], mid, entry["target"], message)
            except Exception as err:  # it may have gone: never resend blindly
                outcome = SendOutcome(mid, "unknown", reason=f"the sender failed: {err}")
            done = datetime.now(UTC) if now is None else at
            await asyncio.to_thread(
                _update_deliveries,
                engine,
                report_id,
                lambda e: _outcome(e[i], outcome, int(entry["attempts"]), done),
            )

        await asyncio.gather(*(one(i) for i in claimed))
    with engine.connect() as conn:
        return list(get_report(conn, report_id).deliveries or [])


async def send_due_reports(
    engine: Engine,
    senders: ChannelSenders,
    alerts: AlertSettings,
    *,
    now: datetime | None = None,
    recent: int = 20,
) -> int:
    """Send what is due in the latest reports; how many reports had something to do."""
    r = reports.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(r.id, r.deliveries).order_by(r.id.desc()).limit(recent)).all()
    busy = [
        int(row.id)
        for row in rows
        if any(e["status"] in ("pending", "sending") for e in row.deliveries or [])
    ]
    for report_id in busy:
        await send_report(engine, report_id, senders, alerts, now=now)
    return len(busy)


def add_targets(engine: Engine, report_id: int, targets: Sequence[tuple[str, str]]) -> None:
    """Add targets (not yet listed) to a report's deliveries, pending."""

    def change(entries: list[dict[str, Any]]) -> None:
        have = {(e["channel"], e["target"]) for e in entries}
        entries.extend(_deliveries([t for t in targets if t not in have]))

    _update_deliveries(engine, report_id, change)


__all__ = [
    "JOB",
    "KIND",
    "ReportNotFound",
    "add_targets",
    "get_report",
    "list_reports",
    "make_report",
    "next_report_at",
    "report_due",
    "report_json",
    "send_due_reports",
    "send_report",
]

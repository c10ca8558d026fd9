"""The automation loop: feeds -> enrolments -> runner -> outbox dispatcher, again and again.

:func:`decide` reads the three feeds (each in its own transaction) and runs the due journeys;
:func:`tick` also dispatches the outbox; :func:`run_forever` repeats ``tick`` every
``interval`` seconds until told to stop. ``rfmflow worker`` runs it next to the scoring
scheduler, and ``rfmflow serve`` runs it in process by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from rfmflow.automation.enrol import enrol_from_tag_changes, enrol_from_transitions
from rfmflow.automation.event_feed import process_events
from rfmflow.automation.outbox import dispatch_all
from rfmflow.automation.runner import BATCH, WorkflowCache, run_due
from rfmflow.automation.schedule_trigger import enrol_from_schedules
from rfmflow.automation.senders import ChannelSenders
from rfmflow.automation.settings import AutomationSettings
from rfmflow.service.db.engine import run_write
from rfmflow.service.settings import Settings

log = logging.getLogger("rfmflow.automation")


def decide(
    engine: Engine,
    settings: Settings,
    auto: AutomationSettings,
    *,
    cache: WorkflowCache | None = None,
    now: datetime | None = None,
    batch: int = BATCH,
    stopping: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Read the feeds and run every due journey (``batch`` per transaction; ``stopping``:
    checked between batches, the rest waits for the next pass); what happened."""
    at = now or datetime.now(UTC)
    cache = cache or WorkflowCache()
    overlap = auto.feed_overlap
    out: dict[str, Any] = {
        "transitions": run_write(engine, lambda c: enrol_from_transitions(c, at, overlap)),
        "tag_changes": run_write(engine, lambda c: enrol_from_tag_changes(c, at, overlap)),
        "events": run_write(engine, lambda c: process_events(c, at, overlap, cache)),
        "schedules": run_write(
            engine,
            lambda c: enrol_from_schedules(
                c, at, business_zone=settings.timezone, money_decimals=settings.money_decimals
            ),
        ),
    }
    out["runner"] = run_due(
        engine,
        at,
        cache=cache,
        money_decimals=settings.money_decimals,
        business_zone=settings.timezone,
        batch=batch,
        stopping=stopping,
    ).as_dict()
    return out


async def tick(
    engine: Engine,
    settings: Settings,
    auto: AutomationSettings,
    senders: ChannelSenders,
    *,
    cache: WorkflowCache | None = None,
    now: datetime | None = None,
    batch: int = BATCH,
    stopping: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """One pass: decide, then dispatch the outbox (``stopping`` ends either between batches)."""
    out = await asyncio.to_thread(
        decide, engine, settings, auto, cache=cache, now=now, batch=batch, stopping=stopping
    )
    out["outbox"] = (
        await dispatch_all(engine, senders, auto, now=now, business_zone=settings.timezone, stopping=stopping)
    ).as_dict()
    return out


async def run_forever(
    engine: Engine,
    settings: Settings,
    auto: AutomationSettings,
    *,
    interval: float = 5.0,
    stop: asyncio.Event | None = None,
    senders: ChannelSenders | None = None,
    batch: int = BATCH,
) -> None:
    """Tick every ``interval`` seconds until ``stop`` is set (errors are logged, not fatal).

    Setting ``stop`` ends the loop after the batch in progress (a decision is committed whole,
    the messages already handed to a channel get their outcome recorded); what is left is
    taken by the next pass of this or another worker."""
    stop = stop or asyncio.Event()
    cache = WorkflowCache()
    async with senders or ChannelSenders(auto) as opened:
        log.info("automation loop started", extra={"interval": interval, "channels": sorted(opened.channels)})
        while not stop.is_set():
            try:
                result = await tick(
                    engine, settings, auto, opened, cache=cache, batch=batch, stopping=stop.is_set
                )
                if result["runner"]["journeys"] or result["outbox"]["claimed"]:
                    log.info("automation tick", extra={"result": result})
            except Exception:
                log.exception("automation tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


__all__ = ["decide", "run_forever", "tick"]

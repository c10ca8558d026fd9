"""The automation loop inside ``rfmflow serve``: started with the app, stopped before it stops.

:func:`register` wraps the app's lifespan. When the process asked for the loop
(``app.state.run_automation``, which ``rfmflow serve`` sets unless ``--no-automation``) and
``RFMFLOW_AUTOMATION`` is not ``off``, an asyncio task runs
:func:`~rfmflow.automation.worker.run_forever` on the app's engine: enrolment from the feeds,
the due journeys, the outbox. On shutdown (SIGTERM, Ctrl-C) the loop is told to stop and the
app waits for the batch in progress before it closes its database connections.

An app built by ``create_app`` alone (tests, embedding) does not run the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from rfmflow.automation.engine_config import load_engine
from rfmflow.automation.settings import AutomationSettingsError
from rfmflow.automation.worker import run_forever

log = logging.getLogger("rfmflow.automation")


def register(app: FastAPI) -> None:
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        async with inner(target) as state:
            stop = asyncio.Event()
            task = _start(app, stop)
            app.state.automation_task = task
            try:
                yield state
            finally:
                stop.set()
                if task is not None:
                    await task

    app.router.lifespan_context = lifespan


def _start(app: FastAPI, stop: asyncio.Event) -> asyncio.Task[None] | None:
    if not getattr(app.state, "run_automation", False):
        return None
    service = app.state.service
    try:
        config, auto = load_engine(service.settings, getattr(app.state, "env_file", None))
    except AutomationSettingsError as err:
        log.error("automation settings are invalid", extra={"error": str(err)})
        raise
    if not config.enabled:
        log.info("the automation loop is off in this process (RFMFLOW_AUTOMATION=off)")
        return None
    return asyncio.create_task(
        run_forever(
            service.engine,
            service.settings,
            auto,
            interval=config.interval,
            stop=stop,
            batch=config.batch,
        ),
        name="rfmflow-automation",
    )


__all__ = ["register"]

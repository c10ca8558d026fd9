"""``rfmflow serve``: migrate, make sure an admin key exists, run uvicorn until stopped.

Uvicorn stops on SIGTERM or SIGINT gracefully: it stops accepting connections, lets the
requests in flight finish (up to :data:`GRACEFUL_SECONDS`), then the app disposes of its
database connections. Every acknowledged event was committed before its answer was sent,
so even a SIGKILL loses nothing that was acknowledged.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from rfmflow.service.app import create_app
from rfmflow.service.auth import create_key, has_active_admin
from rfmflow.service.db.engine import create_db_engine
from rfmflow.service.db.migrate import current, upgrade
from rfmflow.service.logs import configure_logging
from rfmflow.service.settings import Settings

GRACEFUL_SECONDS = 30
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
log = logging.getLogger("rfmflow.service.server")


def first_admin_key(settings: Settings) -> str | None:
    """Create an admin key when none is active (first start); return its text, else None."""
    engine = create_db_engine(settings.database_url)
    try:
        if has_active_admin(engine):
            return None
        _key, text = create_key(engine, role="admin", name="first admin (rfmflow serve)", actor="serve")
        return text
    finally:
        engine.dispose()


def prepare(settings: Settings) -> str | None:
    """Migrate the schema to the newest revision; return a new admin key if one was made."""
    engine = create_db_engine(settings.database_url)
    try:
        before = current(engine)
        upgrade(engine)
        after = current(engine)
        if before != after:
            log.info("schema migrated", extra={"from": before, "to": after})
    finally:
        engine.dispose()
    return first_admin_key(settings)


def serve(
    settings: Settings,
    *,
    announce: Callable[[str], None] = print,
    scheduler: bool = True,
    automation: bool = True,
    env_file: Path | None = None,
    make_app: Callable[[Settings], FastAPI] = create_app,
) -> None:
    """Run the service in the foreground until SIGTERM/SIGINT; with ``scheduler`` the scoring
    schedule (``RFMFLOW_SCORE_CRON``, daily by default) runs in this process too, and with
    ``automation`` the automation loop (unless ``RFMFLOW_AUTOMATION=off``; its settings are read
    from ``env_file`` and the environment when the app starts). ``make_app`` builds the app
    (``rfmflow serve`` passes the product's whole app, :func:`rfmflow.cli.app.build_app`)."""
    log_config = configure_logging(settings.log_level)
    new_key = prepare(settings)
    if new_key is not None:
        announce(
            "No admin key existed, so one was created. It is shown only this once; keep it safe:\n\n"
            f"    {new_key}\n\n"
            "Make keys for senders and readers with `rfmflow keys create --role ingest|agent|analyst`."
        )
    app = make_app(settings)
    app.state.run_automation = automation  # the loop is started with the app (its lifespan)
    app.state.env_file = env_file
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=log_config,
        access_log=False,  # the app logs every request as JSON itself
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        server_header=False,
        http="h11",
        ws="none",
        lifespan="on",
    )
    log.info(
        "rfmflow serving",
        extra={
            "url": f"http://{settings.host}:{settings.port}",
            "database": settings.database_url.split("://", 1)[0],
            "timezone": settings.timezone,
            "currency": settings.currency,
        },
    )
    server = uvicorn.Server(config)
    stop_scheduler: Callable[[], None] = lambda: None  # noqa: E731
    if scheduler:
        from rfmflow.service.scoring_jobs import start_scheduler

        stop_scheduler = start_scheduler(settings, app.state.service.engine)
    try:
        with _signals_end_cleanly() as received:
            server.run()
    finally:
        stop_scheduler()  # waits for a run in progress
    log.info("rfmflow stopped", extra={"signals": [signal.Signals(s).name for s in received]})


@contextmanager
def _signals_end_cleanly() -> Iterator[list[int]]:
    """After uvicorn's graceful shutdown it re-raises the SIGTERM/SIGINT it caught; with these
    handlers in place that ends ``serve`` normally (exit status 0) instead of by the signal."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

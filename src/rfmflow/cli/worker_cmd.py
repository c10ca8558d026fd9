"""``rfmflow worker``: the scoring schedule, the automation loop and the alerts loop, in one process.

Composed here (the CLI layer) because the service layer may not import the automation:
scheduled scoring runs in a thread (:func:`rfmflow.service.scoring_jobs.worker_loop`), the
automation loop (:func:`rfmflow.automation.worker.run_forever`: feeds, due journeys, outbox)
in the asyncio loop of the main thread, with the alerts loop (:func:`rfmflow.alerts.loop.run_forever`:
rules after each run and periodically, the weekly report) unless ``--no-automation`` or
``RFMFLOW_ALERTS_INTERVAL=off``. SIGTERM or Ctrl-C stops both after the batch in
progress. Start as many workers as you like on PostgreSQL: each scoring run is done by one
of them, and each journey step and each message is taken by one (``SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rfmflow.service.cli import _errors, _migrated_engine, _settings, env_file_option

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from rfmflow.automation.engine_config import EngineConfig
    from rfmflow.automation.settings import AutomationSettings
    from rfmflow.service.scoring import RunResult
    from rfmflow.service.scoring_jobs import Schedule
    from rfmflow.service.settings import Settings


@click.command()
@click.option(
    "--once",
    is_flag=True,
    help="One pass of each: the scoring run if it is due, then one automation pass (feeds, due "
    "journeys, outbox); then exit.",
)
@click.option(
    "--now",
    "run_now_flag",
    is_flag=True,
    help="Score everyone now (not waiting for the schedule), then exit.",
)
@click.option(
    "--poll",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds between checks for a due scoring run.",
)
@click.option(
    "--no-automation",
    is_flag=True,
    help="Only run scheduled scoring, not the automation loop (RFMFLOW_AUTOMATION=off does the same).",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 3600),
    default=None,
    help="Seconds between automation passes. Default: RFMFLOW_AUTOMATION_INTERVAL or 5.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="With --now: print the run as JSON; with --once: {scoring, automation} as JSON.",
)
@env_file_option
@_errors
def worker(
    once: bool,
    run_now_flag: bool,
    poll: float,
    no_automation: bool,
    interval: float | None,
    as_json: bool,
    env_file: Path | None,
) -> None:
    """Run scheduled scoring (RFMFLOW_SCORE_CRON, default 'daily 03:00') and the automation loop
    (workflows' journeys and the outbox) until stopped.

    Start as many workers as you like on PostgreSQL: each due run, journey step and message is
    taken by exactly one. SIGTERM or Ctrl-C stops the worker after the batch in progress.
    """
    from rfmflow.automation.engine_config import load_engine
    from rfmflow.service.logs import configure_logging
    from rfmflow.service.scoring_jobs import load_schedule

    settings = _settings(env_file)
    configure_logging(settings.log_level)
    schedule = load_schedule(env_file=env_file)
    config, auto = load_engine(settings, env_file)
    if interval is not None:
        config = type(config)(enabled=config.enabled, interval=interval, batch=config.batch)
    automation = config.enabled and not no_automation
    engine = _migrated_engine(settings)
    try:
        if run_now_flag:
            _score_now(engine, settings, as_json)
        elif once:
            _once(engine, settings, schedule, config, auto, automation=automation, as_json=as_json)
        else:
            every = f", automation every {config.interval:g} s" if automation else ", automation off"
            click.echo(f"worker started: schedule {schedule.text!r} ({settings.timezone}){every}", err=True)
            asyncio.run(_run(engine, settings, schedule, config, auto, poll=poll, automation=automation))
            click.echo("worker stopped", err=True)
    finally:
        engine.dispose()


def _score_now(engine: Engine, settings: Settings, as_json: bool) -> None:
    from rfmflow.service.cli_scoring import _print_run
    from rfmflow.service.scoring_jobs import run_now, worker_id

    result = run_now(engine, settings, trigger="cli", actor=worker_id("cli"), wait_seconds=3600)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print_run(result.as_dict())


def _once(
    engine: Engine,
    settings: Settings,
    schedule: Schedule,
    config: EngineConfig,
    auto: AutomationSettings,
    *,
    automation: bool,
    as_json: bool,
) -> None:
    from rfmflow.service.cli_scoring import _print_run
    from rfmflow.service.scoring_jobs import ensure_job, run_due, worker_id

    ensure_job(engine, schedule, settings)
    result: RunResult | None = run_due(engine, settings, schedule, worker_id())
    passed: dict[str, Any] | None = None
    if automation:
        passed = asyncio.run(_one_pass(engine, settings, config, auto))
    if as_json:
        scoring = result.as_dict() if result is not None else None
        click.echo(json.dumps({"scoring": scoring, "automation": passed}, indent=2, default=str))
        return
    if result is None:
        click.echo("no scoring run is due", err=True)
    else:
        _print_run(result.as_dict())
    if passed is not None:
        runner, outbox = passed["runner"], passed["outbox"]
        outcomes = ", ".join(f"{n} {status}" for status, n in sorted(outbox["outcomes"].items()))
        click.echo(
            f"automation: {runner['journeys']} journeys advanced, {runner['messages']} messages decided, "
            f"{outbox['claimed']} sent ({outcomes or 'none'})",
            err=True,
        )


async def _one_pass(
    engine: Engine, settings: Settings, config: EngineConfig, auto: AutomationSettings
) -> dict[str, Any]:
    from rfmflow.automation.senders import ChannelSenders
    from rfmflow.automation.worker import tick

    async with ChannelSenders(auto) as senders:
        return await tick(engine, settings, auto, senders, batch=config.batch)


async def _run(
    engine: Engine,
    settings: Settings,
    schedule: Schedule,
    config: EngineConfig,
    auto: AutomationSettings,
    *,
    poll: float,
    automation: bool,
) -> None:
    """Both loops until SIGTERM/SIGINT; each finishes what it is doing first."""
    from rfmflow.alerts.loop import run_forever as alerts_forever
    from rfmflow.alerts.settings import load_alert_settings
    from rfmflow.automation.worker import run_forever
    from rfmflow.service.scoring_jobs import worker_loop

    scoring_stop = threading.Event()
    automation_stop = asyncio.Event()

    def stop() -> None:
        scoring_stop.set()
        automation_stop.set()

    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
    jobs = [
        asyncio.to_thread(worker_loop, engine, settings, scoring_stop, schedule=schedule, poll_seconds=poll)
    ]
    if automation:
        jobs.append(
            run_forever(
                engine, settings, auto, interval=config.interval, stop=automation_stop, batch=config.batch
            )
        )
        alerts = load_alert_settings(settings)
        if alerts.interval is not None:  # alerts and the weekly report (RFMFLOW_ALERTS_INTERVAL)
            jobs.append(alerts_forever(engine, settings, automation_stop, alerts=alerts))
    try:
        await asyncio.gather(*jobs)
    finally:
        stop()


__all__ = ["worker"]

"""``rfmflow serve``: the product's whole app (:func:`rfmflow.cli.app.build_app`) under uvicorn,
with the scoring schedule, the automation loop and the alerts loop in the same process."""

from __future__ import annotations

from pathlib import Path

import click

from rfmflow.service.cli import _errors, _load_demo_if_empty, _settings, env_file_option


@click.command()
@click.option("--host", help="Address to listen on. Default: RFMFLOW_HOST or 127.0.0.1.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port. Default: RFMFLOW_PORT or 8000.")
@click.option(
    "--demo",
    is_flag=True,
    help="Load demo data (a shop with a Telegram bot, the last two years) when the database has no events.",
)
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="Do not run scheduled scoring in this process (run `rfmflow worker` processes instead).",
)
@click.option(
    "--no-automation",
    is_flag=True,
    help="Do not run the automation loop in this process (run `rfmflow worker` processes instead; "
    "RFMFLOW_AUTOMATION=off does the same).",
)
@env_file_option
@_errors
def serve(
    host: str | None,
    port: int | None,
    demo: bool,
    no_scheduler: bool,
    no_automation: bool,
    env_file: Path | None,
) -> None:
    """Run the HTTP API: migrate the database, create an admin key on first start, serve.

    Scheduled scoring (RFMFLOW_SCORE_CRON, daily by default) and the automation loop (workflows
    and the outbox) run in the same process unless --no-scheduler / --no-automation. Stops
    gracefully on Ctrl-C or SIGTERM (requests in flight and the automation batch in progress
    finish first).
    """
    from rfmflow.cli.app import build_app
    from rfmflow.service.server import serve as run

    settings = _settings(env_file, host=host, port=port)
    if demo:
        _load_demo_if_empty(settings)
    run(
        settings,
        announce=lambda text: click.echo(text),
        scheduler=not no_scheduler,
        automation=not no_automation,
        env_file=env_file,
        make_app=build_app,
    )


__all__ = ["serve"]

"""``rfmflow workflows ...``: workflows in the service's database, as ``/v1/workflows`` offers.

Register with ``main.add_command(workflows)``. Writes make the same ``audit_log`` rows as the
API (actor ``cli:<user>``); the database comes from the service's settings
(``RFMFLOW_DATABASE_URL``, ``.env``, ``--env-file``). Exit status: 0 success, 1 runtime error
(a workflow that does not load, with its path and reason; an unknown workflow; a status change
that is not possible), 2 usage error.

=========================================  ==================================================
command                                    what
=========================================  ==================================================
``list``                                   workflows, status, version, trigger, journeys
``show NAME``                              one workflow: its settings, counts and YAML
``validate FILE``                          check a YAML file without storing it
``apply FILE``                             create the workflow, or store a new version
``activate|pause|stop NAME``               change its status
``templates``, ``templates show NAME``     the built-in templates; one's YAML (to copy)
``results NAME [--window 7d]``             enrolled, sent, delivered, ..., converted, revenue
                                           in total, per step and per segment
=========================================  ==================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from rfmflow.service.cli import (
    _errors,
    echo_json,
    env_file_option,
    service_database,
)

RESULT_COLUMNS = ("enrolled", "messages", "sent", "delivered", "failed", "blocked", "clicked", "replied")


def _read(file: Path) -> tuple[Any, str]:
    from rfmflow.automation import workflows_store as store

    return store.parse(file.read_text(encoding="utf-8"), source=str(file))


@click.group()
def workflows() -> None:
    """List, check, apply, activate, pause and stop workflows; templates; results (service database)."""


@workflows.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the workflows as JSON.")
@env_file_option
@_errors
def workflows_list(as_json: bool, env_file: Path | None) -> None:
    """Every workflow with its status, version, trigger and journeys per status."""
    from rfmflow.automation import workflows_store as store

    with service_database(env_file) as (_unused, engine), engine.connect() as conn:
        found = [w.as_dict(store.enrolment_counts(conn, w.id)) for w in store.list_all(conn)]
    if as_json:
        echo_json([{k: v for k, v in w.items() if k != "yaml"} for w in found])
        return
    if not found:
        click.echo("no workflows yet (rfmflow workflows apply FILE)", err=True)
        return
    for w in found:
        counts = ", ".join(f"{k} {v:,}" for k, v in sorted(w["enrolments"].items())) or "no journeys"
        click.echo(f"{w['name']:<28} {w['status']:<8} v{w['version']:<3} {w['trigger']:<36} ({counts})")


@workflows.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the workflow as JSON.")
@env_file_option
@_errors
def workflows_show(name: str, as_json: bool, env_file: Path | None) -> None:
    """One workflow: status, version, trigger, channels, steps, journeys and its YAML."""
    from rfmflow.automation import workflows_store as store

    with service_database(env_file) as (_unused, engine), engine.connect() as conn:
        stored = store.get(conn, name)
        data = stored.as_dict(store.enrolment_counts(conn, stored.id))
    if as_json:
        echo_json(data)
        return
    for key in ("name", "status", "version", "description", "trigger", "entry", "channels", "steps"):
        value = data[key]
        click.echo(f"{key:<12} {', '.join(value) if isinstance(value, list) else value}")
    journeys = ", ".join(f"{k} {v:,}" for k, v in sorted(data["enrolments"].items())) or "none"
    click.echo(f"{'journeys':<12} {journeys}")
    click.echo(f"{'activated':<12} {data['activated_at'] or 'never'}")
    click.echo("")
    click.echo(data["yaml"].rstrip("\n"))


@workflows.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_errors
def workflows_validate(file: Path) -> None:
    """Check a workflow YAML FILE (nothing is stored); a mistake is printed with its path."""
    workflow, _text = _read(file)
    click.echo(
        f"{file}: workflow {workflow.name!r} is valid: {workflow.trigger.describe()}, "
        f"{len(workflow.steps)} steps, channels: {', '.join(sorted(workflow.channels())) or 'none'}"
    )


@workflows.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@env_file_option
@_errors
def workflows_apply(file: Path, env_file: Path | None) -> None:
    """Store the workflow in FILE: created (as a draft), updated (a new version) or unchanged."""
    from rfmflow.automation import workflows_store as store
    from rfmflow.service.auth import cli_actor
    from rfmflow.service.db.engine import run_write

    workflow, text = _read(file)
    with service_database(env_file) as (_unused, engine):
        stored, what = run_write(
            engine, lambda conn: store.save(conn, workflow, text, actor=cli_actor(), at=datetime.now(UTC))
        )
    click.echo(f"{what}: workflow {stored.name!r} version {stored.version} ({stored.status})")


def _status_command(action: str, help_text: str) -> None:
    @workflows.command(action, help=help_text)
    @click.argument("name")
    @env_file_option
    @_errors
    def change(name: str, env_file: Path | None) -> None:
        from rfmflow.automation import workflows_store as store
        from rfmflow.service.auth import cli_actor
        from rfmflow.service.db.engine import run_write

        with service_database(env_file) as (_unused, engine):
            result = run_write(
                engine,
                lambda conn: store.set_status(conn, name, action, actor=cli_actor(), at=datetime.now(UTC)),
            )
        line = f"workflow {name!r} is {result['status']}"
        if not result["changed"]:
            line += " (no change)"
        if "enrolled" in result:
            line += f"; {result['enrolled']:,} existing members enrolled"
        if "journeys_stopped" in result:
            line += f"; {result['journeys_stopped']:,} journeys stopped"
        click.echo(line)


_status_command("activate", "Activate the workflow (entry: existing enrols current members at once).")
_status_command("pause", "Pause an active workflow: its journeys wait.")
_status_command("stop", "Stop the workflow: its active journeys end as stopped.")


@workflows.group("templates", invoke_without_command=True)
@click.pass_context
def workflows_templates(ctx: click.Context) -> None:
    """The built-in templates (``templates show NAME`` prints one's YAML)."""
    if ctx.invoked_subcommand is not None:
        return
    from rfmflow.automation import builtin_workflows

    for name, wf in builtin_workflows().items():
        click.echo(f"{name:<22} {wf.trigger.describe():<30} {' '.join(wf.description.split())}")


@workflows_templates.command("show")
@click.argument("name")
@_errors
def workflows_template_show(name: str) -> None:
    """Print a built-in template's YAML (save it, change it, then ``apply`` it)."""
    from rfmflow.automation import builtin_workflow_text

    click.echo(builtin_workflow_text(name).rstrip("\n"))


def _window(text: str | None) -> timedelta | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", text)
    if match is None or int(match.group(1)) == 0:
        raise click.BadParameter(
            f"expected a duration such as 12h, 7d or 2w, got {text!r}", param_hint="--window"
        )
    window = timedelta(hours=int(match.group(1)) * {"h": 1, "d": 24, "w": 168}[match.group(2)])
    if window > timedelta(days=365):
        raise click.BadParameter("at most 365d", param_hint="--window")
    return window


def _result_line(label: str, values: Mapping[str, Any]) -> str:
    numbers = "".join(f"{int(values.get(c, 0)):>9,}" for c in RESULT_COLUMNS)
    rate = values.get("conversion_rate")
    shown = f"{rate:.1%}" if isinstance(rate, float) else "-"
    return (
        f"{label:<26}{numbers}{int(values.get('converted', 0)):>10,}{shown:>8}{values.get('revenue', ''):>12}"
    )


@workflows.command("results")
@click.argument("name")
@click.option("--window", help="Attribution window: 12h, 7d, 2w (default: the goal's within, else 14d).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (as the API answers).")
@env_file_option
@_errors
def workflows_results(name: str, window: str | None, as_json: bool, env_file: Path | None) -> None:
    """The workflow's results in total, per step and per segment (and its splits' lift)."""
    from rfmflow.automation.results import workflow_results

    span = _window(window)
    with service_database(env_file) as (settings, engine), engine.connect() as conn:
        data = workflow_results(conn, name, window=span, decimals=settings.money_decimals)
    if as_json:
        echo_json(data)
        return
    click.echo(f"workflow {name!r}: goal {data['goal_event']} within {data['window_days']:g} days")
    header = "".join(f"{c:>9}" for c in RESULT_COLUMNS)
    click.echo(f"{'':<26}{header}{'converted':>10}{'rate':>8}{'revenue':>12}")
    click.echo(_result_line("total", data["totals"]))
    for segment, values in data["by_segment"].items():
        click.echo(_result_line(f"  {segment or '(none)'}", values))
    for step in data["steps"]:
        click.echo(_result_line(f"step {step['step']} ({step['kind']})", step["totals"]))
        for segment, values in step["by_segment"].items():
            click.echo(_result_line(f"  {segment or '(none)'}", values))
    splits = data.get("splits")
    if splits:
        click.echo(f"splits: {json.dumps(splits, default=str)}")


__all__ = ["workflows"]

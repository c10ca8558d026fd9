"""``rfmflow alerts ...`` and ``rfmflow reports ...``: alert rules, their history, the weekly report.

Register with ``main.add_command(alerts)`` and ``main.add_command(reports)``. The database and
the channels come from the service's settings (``RFMFLOW_*``, ``.env``, ``--env-file``). Exit
status: 0 success, 1 runtime error (an unknown rule, a rule the database refuses), 2 usage error
(a bad option; a bad parameter names the field).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from rfmflow.service.cli import (
    _errors,
    echo_json,
    env_file_option,
    service_database,
)


def _param_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@click.group()
def alerts() -> None:
    """Alert rules and the occurrences they fired (service database)."""


@alerts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rules as JSON.")
@env_file_option
@_errors
def alerts_list(as_json: bool, env_file: Path | None) -> None:
    """The alert rules."""
    from rfmflow.alerts.store import list_rules

    with service_database(env_file) as (_unused, engine), engine.connect() as conn:
        found = [r.as_dict() for r in list_rules(conn)]
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no alert rules yet (rfmflow alerts add --help)", err=True)
    for r in found:
        state = "on " if r["enabled"] else "off"
        click.echo(f"{r['id']:>4}  {state}  {r['name']}: {r['description']} → {r['channel']} {r['target']}")


@alerts.command("add")
@click.option("--name", required=True, help="A unique name.")
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["segment_growth", "segment_metric_drop", "broadcast_conversion_below", "no_events"]),
)
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A parameter (repeat): pct=20.")
@click.option("--channel", required=True, type=click.Choice(["telegram", "email", "webhook"]))
@click.option("--target", required=True, help="Chat id, e-mail address or URL.")
@click.option("--disabled", is_flag=True, help="Store it switched off.")
@env_file_option
@_errors
def alerts_add(
    name: str,
    kind: str,
    params: tuple[str, ...],
    channel: str,
    target: str,
    disabled: bool,
    env_file: Path | None,
) -> None:
    """Add a rule, e.g. --kind segment_growth --param segment="At Risk" --param pct=20 --param days=7."""
    from rfmflow.alerts.rules import RuleError
    from rfmflow.alerts.store import create_rule
    from rfmflow.service.db.engine import run_write

    values: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--param")
        values[key.strip()] = _param_value(value)
    body = {
        "name": name,
        "kind": kind,
        "params": values,
        "channel": channel,
        "target": target,
        "enabled": not disabled,
    }
    with service_database(env_file) as (_unused, engine):
        try:
            rule = run_write(engine, lambda c: create_rule(c, body, actor="cli", at=datetime.now(UTC)))
        except RuleError as err:
            field = err.field.removeprefix("params.")
            hint = f"--param {field}" if err.field.startswith("params") else f"--{err.field}"
            raise click.BadParameter(err.reason, param_hint=hint) from None
    click.echo(f"rule {rule.id} added: {rule.description}")


def _set_enabled(rule_id: int, enabled: bool, env_file: Path | None) -> None:
    from rfmflow.alerts.store import update_rule
    from rfmflow.service.db.engine import run_write

    with service_database(env_file) as (_unused, engine):
        rule = run_write(
            engine, lambda c: update_rule(c, rule_id, {"enabled": enabled}, at=datetime.now(UTC))
        )
    click.echo(f"rule {rule.id} ({rule.name}) {'enabled' if enabled else 'disabled'}")


@alerts.command("enable")
@click.argument("rule_id", type=int)
@env_file_option
@_errors
def alerts_enable(rule_id: int, env_file: Path | None) -> None:
    """Switch a rule on."""
    _set_enabled(rule_id, True, env_file)


@alerts.command("disable")
@click.argument("rule_id", type=int)
@env_file_option
@_errors
def alerts_disable(rule_id: int, env_file: Path | None) -> None:
    """Switch a rule off."""
    _set_enabled(rule_id, False, env_file)


@alerts.command("delete")
@click.argument("rule_id", type=int)
@env_file_option
@_errors
def alerts_delete(rule_id: int, env_file: Path | None) -> None:
    """Delete a rule (its history stays)."""
    from rfmflow.alerts.store import delete_rule
    from rfmflow.service.db.engine import run_write

    with service_database(env_file) as (_unused, engine):
        run_write(engine, lambda c: delete_rule(c, rule_id))
    click.echo(f"rule {rule_id} deleted")


@alerts.command("events")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@env_file_option
@_errors
def alerts_events(limit: int, as_json: bool, env_file: Path | None) -> None:
    """Occurrences, newest first, with their delivery status."""
    from rfmflow.alerts.store import list_events

    with service_database(env_file) as (_unused, engine), engine.connect() as conn:
        found = list_events(conn, limit=limit)
    if as_json:
        echo_json(found)
        return
    for e in found:
        click.echo(
            f"{e['id']:>5}  {e['fired_at'][:16]}  {e['status']:<8}  {e['rule'] or '(deleted)'}: {e['title']}"
        )


@alerts.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print what happened as JSON.")
@env_file_option
@_errors
def alerts_check(as_json: bool, env_file: Path | None) -> None:
    """Evaluate the rules now and send what fired (and a due report)."""
    from rfmflow.alerts.delivery import alert_senders
    from rfmflow.alerts.loop import tick
    from rfmflow.alerts.settings import load_alert_settings

    with service_database(env_file) as (settings, engine):
        chosen = load_alert_settings(settings)

        async def go() -> dict[str, Any]:
            async with alert_senders(chosen) as senders:
                return await tick(engine, settings, chosen, senders)

        result = asyncio.run(go())
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"{len(result['fired'])} rule occurrence(s), {result['new']} new; "
        f"sent: {result['delivery']['outcomes'] or 'nothing'}"
    )


@click.group()
def reports() -> None:
    """The weekly report (service database)."""


@reports.command("weekly")
@click.option("--send", is_flag=True, help="Send it to RFMFLOW_REPORT_TELEGRAM_CHAT / RFMFLOW_REPORT_EMAILS.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the page here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's numbers as JSON.")
@env_file_option
@_errors
def reports_weekly(send: bool, output: Path | None, as_json: bool, env_file: Path | None) -> None:
    """Make the report of the 7 days up to now (kept in the database)."""
    from rfmflow.alerts.delivery import alert_senders
    from rfmflow.alerts.reports import get_report, make_report, send_report
    from rfmflow.alerts.settings import load_alert_settings
    from rfmflow.service.db.engine import run_write

    with service_database(env_file) as (settings, engine):
        chosen = load_alert_settings(settings)
        if send and not chosen.report_targets:
            raise click.UsageError("--send: set RFMFLOW_REPORT_TELEGRAM_CHAT or RFMFLOW_REPORT_EMAILS first")
        now = datetime.now(UTC).replace(microsecond=0)
        targets = chosen.report_targets if send else []
        report_id, _new = run_write(
            engine, lambda c: make_report(c, settings, chosen, now, trigger="cli", targets=targets)
        )
        deliveries: list[dict[str, Any]] = []
        if send:

            async def go() -> list[dict[str, Any]]:
                async with alert_senders(chosen) as senders:
                    return await send_report(engine, report_id, senders, chosen)

            deliveries = asyncio.run(go())
        with engine.connect() as conn:
            row = get_report(conn, report_id)
    if output is not None:
        output.write_text(row.html, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    if as_json:
        echo_json({"id": report_id, "summary": row.summary, "deliveries": deliveries})
    elif output is None:
        s = row.summary
        click.echo(
            f"report {report_id}: {s['from']} – {s['to']}, {s['customers_now']:,} customers, "
            f"{s['moves']['changed']:,} moved, {len(s['alerts'])} alert(s)"
        )
    for d in deliveries:
        click.echo(f"  {d['channel']} {d['target']}: {d['status']}{' – ' + d['error'] if d['error'] else ''}")


@reports.command("list")
@env_file_option
@_errors
def reports_list(env_file: Path | None) -> None:
    """The latest reports."""
    from rfmflow.alerts.reports import list_reports

    with service_database(env_file) as (_unused, engine), engine.connect() as conn:
        found = list_reports(conn)
    for r in found:
        sent = ", ".join(f"{d['channel']}:{d['status']}" for d in r["deliveries"]) or "not sent"
        click.echo(f"{r['id']:>4}  {r['period_end'][:16]}  {sent}")


__all__ = ["alerts", "reports"]

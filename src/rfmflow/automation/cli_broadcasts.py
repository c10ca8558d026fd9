"""``rfmflow broadcasts list|preview|create|start|stop``: broadcasts in the service's database.

Register with ``main.add_command(broadcasts)``. The same operations as ``/v1/broadcasts`` (and
the same audit log rows, actor ``cli:<user>``); the database comes from the service's settings
(``RFMFLOW_DATABASE_URL``, ``.env``, ``--env-file``). Exit status: 0 success, 1 runtime error
(unknown broadcast, a start that needs ``--confirm-count``, a broadcast in the wrong state),
2 usage error (a bad option or broadcast file).
"""

from __future__ import annotations

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


@click.group()
def broadcasts() -> None:
    """Preview, create, start and stop broadcasts (service database)."""


@broadcasts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the broadcasts as JSON.")
@env_file_option
@_errors
def broadcasts_list(as_json: bool, env_file: Path | None) -> None:
    """The latest broadcasts, newest first, with their outbox rows per status."""
    from rfmflow.automation.broadcasts import list_broadcasts, outbox_counts

    with service_database(env_file) as (_unused, engine), engine.connect() as conn:
        found = [{**b.as_dict(), "outbox": outbox_counts(conn, b.id)} for b in list_broadcasts(conn)]
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no broadcasts yet", err=True)
        return
    for b in found:
        counts = ", ".join(f"{k} {v:,}" for k, v in sorted(b["outbox"].items())) or "no rows"
        click.echo(f"{b['id']:>5}  {b['status']:<9}  {b['channel']:<8}  {b['name']}  ({counts})")


def _audience(text: str | None, segments: tuple[str, ...], tags: tuple[str, ...]) -> Any:
    from pydantic import ValidationError

    from rfmflow.automation.broadcasts import Audience

    try:
        data = json.loads(text) if text else {}
        if segments:
            data["segment"] = list(segments)
        if tags:
            data["tag"] = list(tags)
        return Audience.model_validate(data)
    except (ValueError, TypeError, ValidationError) as err:
        raise click.BadParameter(str(err).splitlines()[0], param_hint="--audience") from None


@broadcasts.command("preview")
@click.option("--id", "broadcast_id", type=int, help="A broadcast's audience (else --channel and filters).")
@click.option(
    "--channel", type=click.Choice(["telegram", "email", "webhook"]), help="The channel to count for."
)
@click.option("--audience", "audience_json", help='Filters as JSON, as the API takes them: {"tag": ["vip"]}.')
@click.option("--segment", multiple=True, help="Any of these segments (repeat).")
@click.option("--tag", multiple=True, help="All of these tags (repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@env_file_option
@_errors
def broadcasts_preview(
    broadcast_id: int | None,
    channel: str | None,
    audience_json: str | None,
    segment: tuple[str, ...],
    tag: tuple[str, ...],
    as_json: bool,
    env_file: Path | None,
) -> None:
    """Count an audience: customers, opted out of the channel, without an address, reachable."""
    from rfmflow.automation.broadcasts import get_broadcast, preview
    from rfmflow.service.customer_search import SearchError, check_segments

    if broadcast_id is None and channel is None:
        raise click.UsageError("give --id or --channel (with filters)")
    audience = None if broadcast_id is not None else _audience(audience_json, segment, tag)
    with service_database(env_file) as (settings, engine), engine.connect() as conn:
        if broadcast_id is not None:
            b = get_broadcast(conn, broadcast_id)
            audience, channel = b.audience, b.channel
        assert audience is not None and channel is not None
        problems = audience.to_filter().problems()
        if problems:
            raise SearchError(problems)
        check_segments(conn, audience.to_filter().segments)
        counts = preview(conn, settings, audience, channel)
    counts = {**counts, "needs_confirmation": counts["audience"] > settings.broadcast_confirm_above}
    if as_json:
        echo_json(counts)
        return
    for key, value in counts.items():
        click.echo(f"{key:<19} {value}")


@broadcasts.command("create")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@env_file_option
@_errors
def broadcasts_create(file: Path, env_file: Path | None) -> None:
    """Create a draft from a JSON or YAML FILE holding the API's body (name, channel, message,
    vars, audience, scheduled_at, cap_policy); prints its id."""
    import yaml
    from pydantic import ValidationError

    from rfmflow.automation.broadcasts import create_broadcast
    from rfmflow.automation.routes_broadcasts import BroadcastIn
    from rfmflow.service.auth import cli_actor
    from rfmflow.service.db.engine import run_write

    try:
        body = BroadcastIn.model_validate(yaml.safe_load(file.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as err:
        raise click.BadParameter(str(err), param_hint="FILE") from None
    with service_database(env_file) as (_unused, engine):
        created = run_write(
            engine,
            lambda conn: create_broadcast(
                conn,
                name=body.name,
                channel=body.channel,
                message=body.message,
                variables=body.vars,
                audience=body.audience,
                scheduled_at=body.scheduled_at,
                cap_policy=body.cap_policy,
                actor=cli_actor(),
                at=datetime.now(UTC),
            ),
        )
    click.echo(created.id)
    click.echo(f"created draft broadcast {created.id} {created.name!r}", err=True)


@broadcasts.command("start")
@click.argument("broadcast_id", type=int)
@click.option("--confirm-count", type=int, help="The audience count the preview showed (large audiences).")
@env_file_option
@_errors
def broadcasts_start(broadcast_id: int, confirm_count: int | None, env_file: Path | None) -> None:
    """Write the broadcast's outbox rows (the worker sends them); safe to run again."""
    from rfmflow.automation.broadcasts import start
    from rfmflow.service.auth import cli_actor

    with service_database(env_file) as (settings, engine):
        done = start(
            engine,
            settings,
            broadcast_id,
            confirm_count=confirm_count,
            actor=cli_actor(),
            now=datetime.now(UTC),
        )
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(done["outbox"].items())) or "no rows"
    click.echo(f"broadcast {broadcast_id} is {done['broadcast']['status']}: {counts}")


@broadcasts.command("stop")
@click.argument("broadcast_id", type=int)
@env_file_option
@_errors
def broadcasts_stop(broadcast_id: int, env_file: Path | None) -> None:
    """The kill switch: stop now and cancel every row not yet sending."""
    from rfmflow.automation.broadcasts import stop
    from rfmflow.service.auth import cli_actor

    with service_database(env_file) as (_unused, engine):
        _b, cancelled = stop(engine, broadcast_id, actor=cli_actor(), now=datetime.now(UTC))
    click.echo(f"broadcast {broadcast_id} stopped; {cancelled:,} pending messages cancelled")


__all__ = ["broadcasts"]

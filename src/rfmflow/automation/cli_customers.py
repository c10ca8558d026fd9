"""``rfmflow customers personal-data ID`` and ``rfmflow customers erase ID --yes`` (GDPR).

The same operations as ``GET /v1/customers/{id}/personal-data`` and ``POST
/v1/customers/{id}/erase`` (:mod:`rfmflow.automation.gdpr`), with the same ``audit_log`` row
(actor ``cli:<user>``). Exit status: 0 success, 1 an unknown customer, 2 a usage error
(``erase`` without ``--yes``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from rfmflow.service.cli import _errors, _migrated_engine, _settings, env_file_option


@click.group()
def customers() -> None:
    """A customer's personal data: export it, or erase it on request (GDPR)."""


@customers.command("personal-data")
@click.argument("customer_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON here.")
@env_file_option
@_errors
def personal_data_cmd(customer_id: str, output: Path | None, env_file: Path | None) -> None:
    """Everything held about CUSTOMER_ID, as JSON (stdout, or -o FILE)."""
    from rfmflow.automation.gdpr import personal_data

    settings = _settings(env_file)
    engine = _migrated_engine(settings)
    try:
        with engine.connect() as conn:
            data = personal_data(conn, customer_id)
    finally:
        engine.dispose()
    text = json.dumps(data, indent=2, default=str, ensure_ascii=False)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@customers.command("erase")
@click.argument("customer_id")
@click.option("--yes", is_flag=True, help="Confirm: the erasure cannot be undone.")
@env_file_option
@_errors
def erase_cmd(customer_id: str, yes: bool, env_file: Path | None) -> None:
    """Erase CUSTOMER_ID's personal data, keep the counts, opt them out of every channel."""
    from rfmflow.automation.gdpr import erase_with_audit
    from rfmflow.service.auth import cli_actor
    from rfmflow.service.db.engine import run_write

    if not yes:
        raise click.UsageError("erasing cannot be undone: add --yes to confirm")
    settings = _settings(env_file)
    engine = _migrated_engine(settings)
    try:
        done = run_write(
            engine, lambda conn: erase_with_audit(conn, customer_id, cli_actor(), datetime.now(UTC))
        )
    finally:
        engine.dispose()
    removed = done["removed"]
    click.echo(
        f"erased {customer_id!r}: profile {'cleared' if removed['profile'] else 'none'}, "
        f"{removed['event_properties']:,} event properties, {removed['messages']:,} messages, "
        f"{removed['task_notes']:,} task notes; opted out of {', '.join(done['opted_out']) or 'nothing new'}"
    )


__all__ = ["customers"]

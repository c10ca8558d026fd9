"""``rfmflow predictions``: fit the churn and CLV models in the service's database, or show the
newest fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rfmflow.service.cli import _errors, _migrated_engine, _settings, env_file_option


def describe_fit(fit: dict[str, Any]) -> str:
    """One line about a fit: its churn counts, or why it failed."""
    if fit["status"] != "done":
        return f"predictions not fitted: {fit['error']}"
    churn = fit["summary"]["churn_counts"]
    risks = ", ".join(f"{churn.get(r, 0):,} {r}" for r in ("high", "medium", "low"))
    return (
        f"predicted {fit['customers']:,} customers as of {fit['as_of']} ({fit['model']}): churn risk {risks}"
    )


@click.group()
def predictions() -> None:
    """Churn risk, expected purchases and CLV of the service's customers."""


@predictions.command("fit")
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON.")
@env_file_option
@_errors
def fit(as_json: bool, env_file: Path | None) -> None:
    """Fit the models of the active scheme's predictions block now and replace every
    customer's predictions (exit status 1 when the data cannot be fitted)."""
    from rfmflow.service.predictions import fit_predictions

    settings = _settings(env_file)
    engine = _migrated_engine(settings)
    try:
        result = fit_predictions(engine, settings).as_dict()
    finally:
        engine.dispose()
    click.echo(json.dumps(result, indent=2) if as_json else describe_fit(result))
    if result["status"] != "done":
        raise SystemExit(1)


@predictions.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON.")
@env_file_option
@_errors
def show(as_json: bool, env_file: Path | None) -> None:
    """The newest successful fit, with expected revenue and CLV per segment."""
    from rfmflow.service.predictions import latest_fit

    settings = _settings(env_file)
    engine = _migrated_engine(settings)
    try:
        with engine.connect() as conn:
            found = latest_fit(conn)
    finally:
        engine.dispose()
    if found is None:
        raise click.ClickException("no predictions yet: run `rfmflow predictions fit`")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(describe_fit(found))
    scale = 10**settings.money_decimals
    click.echo(f"{'segment':<22} {'customers':>9} {'high':>6} {'medium':>6} {'exp. revenue':>14} {'CLV':>14}")
    for seg in found["summary"]["by_segment"]:
        churn = seg["churn"]
        click.echo(
            f"{seg['segment']:<22} {seg['customers']:>9,} {churn['high']:>6,} {churn['medium']:>6,} "
            f"{seg['expected_revenue_minor'] / scale:>14,.2f} {seg['clv_minor'] / scale:>14,.2f}"
        )
    for note in found["summary"].get("notes", []):
        click.echo(f"note: {note}")

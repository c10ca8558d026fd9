"""``rfmflow predict``: fit the buy-till-you-die and spend models and predict every customer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from rfmflow.cli.options import (
    check_output_option,
    consoles,
    handle_errors,
    input_options,
    prediction_kwargs,
    prediction_options,
    read_kwargs,
    write_text_atomic,
)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@input_options
@prediction_options
@click.option(
    "--calibration-end",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Fit on the events up to this day (YYYY-MM-DD) and compare predictions with what happened after.",
)
@click.option("--compare", is_flag=True, help="Fit BG/NBD, Pareto/NBD and MBG/NBD and compare them.")
@click.option(
    "--save-models", type=click.Path(dir_okay=False), help="Write the fitted parameters to a JSON file."
)
@click.option(
    "--load-models",
    type=click.Path(dir_okay=False, exists=True),
    help="Predict with parameters saved by --save-models instead of fitting.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write per-customer predictions to .csv, .parquet or .json.",
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False), help="Write an HTML report with charts."
)
@click.option("--json", "as_json", is_flag=True, help="Print the fitted models and summary as JSON.")
@handle_errors
def predict(
    file: str,
    calibration_end: Any,
    compare: bool,
    save_models: str | None,
    load_models: str | None,
    output: str | None,
    html_path: str | None,
    as_json: bool,
    **opts: Any,
) -> None:
    """Predict churn, purchases and lifetime value for every customer in FILE.

    Fits a purchase model (MBG/NBD by default) and the Gamma-Gamma spend model by maximum
    likelihood and writes, per customer, p_alive, expected_purchases (over --horizon days),
    expected_spend, clv (over --clv-horizon days, discounted), churn_risk and the expected
    date of the next purchase. The input is read as by `rfmflow score`.
    """
    from rfmflow.api import predict as predict_api
    from rfmflow.cli.render import RichProgress, print_prediction

    out, err = consoles()
    check_output_option(output)
    if load_models and (compare or save_models):
        raise click.UsageError(
            "--load-models predicts with saved parameters: it cannot --compare or --save-models"
        )
    settings = prediction_kwargs(opts)
    if load_models and ("model" in settings or "penalizer" in settings):
        raise click.UsageError(
            "--load-models predicts with the saved model: --model and --penalizer do not apply"
        )
    thresholds = settings.pop("churn_risk", None)
    result = predict_api(
        file,
        **read_kwargs(opts),
        **settings,
        churn_thresholds=(thresholds["high_below"], thresholds["medium_below"]) if thresholds else None,
        calibration_end=calibration_end.date() if calibration_end else None,
        compare=compare,
        load_models=load_models,
        save_models=save_models,
        progress=RichProgress(err),
    )
    if output:
        result.write(output)
    if as_json:
        payload = result.summary_dict()
        payload["output"] = output
        click.echo(json.dumps(payload, indent=2))
    else:
        print_prediction(result.report, out, err, customers=result.customers, currency=result.currency)
        for note in result.notes:
            err.print(f"note: {escape(note)}", highlight=False)
    if html_path:
        from rfmflow.report import render_prediction_html

        write_text_atomic(Path(html_path), render_prediction_html(result))
        err.print(f"wrote the report to {html_path}")
    if save_models:
        err.print(f"wrote the fitted models to {save_models}")
    if output:
        err.print(f"wrote {result.n_customers:,} customers to {output}")
    elif not as_json:
        err.print("(use -o predictions.csv|.parquet|.json to write the per-customer rows)")

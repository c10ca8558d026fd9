"""The ``rfmflow`` command: parse, call, render.

Exit status: 0 on success, 1 on a runtime error (bad input, invalid scheme), 2 on a usage
error. Messages go to stderr, results to stdout or ``-o``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rfmflow")
def main() -> None:
    """rfmflow: RFM segmentation and lifecycle automation."""


def _run_score(file: str, opts: dict[str, Any], err: Console) -> Any:
    from rfmflow.api import score
    from rfmflow.cli.render import RichProgress

    predict = opts.pop("predict")
    settings = prediction_kwargs(opts)
    return score(
        file,
        **read_kwargs(opts),
        predict=predict,
        predictions=settings or None,
        progress=RichProgress(err),
    )


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@input_options
@click.option("--predict", is_flag=True, help="Fit the models and add predictions beside the scores.")
@prediction_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write per-customer rows to .csv, .parquet or .json.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of tables.")
@handle_errors
def score(file: str, output: str | None, as_json: bool, **opts: Any) -> None:
    """Score every customer in FILE (CSV, Parquet or JSON lines of transactions or interactions)."""
    from rfmflow.cli.render import print_result

    out, err = consoles()
    check_output_option(output)
    result = _run_score(file, opts, err)
    if output:
        result.write(output)
    if as_json:
        payload = result.summary_dict()
        payload["output"] = output
        click.echo(json.dumps(payload, indent=2))
        for warning in result.warnings:
            err.print(f"[yellow]warning:[/] {escape(warning.message)}", highlight=False)
    else:
        print_result(result, out, err)
    if output:
        err.print(f"wrote {result.n_customers:,} customers to {output}")
    elif not as_json:
        err.print("(use -o scores.csv|.parquet|.json to write the per-customer rows)")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@input_options
@click.option("--predict", is_flag=True, help="Fit the models: predictions in the rows and the report.")
@prediction_options
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the HTML report.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write per-customer rows.")
@handle_errors
def report(file: str, html_path: str, output: str | None, **opts: Any) -> None:
    """Score FILE and write a self-contained HTML report with charts."""
    from rfmflow.cli.render import print_result

    out, err = consoles()
    check_output_option(output)
    result = _run_score(file, opts, err)
    print_result(result, out, err)
    _write_report(result, Path(html_path))
    if output:
        result.write(output)
        err.print(f"wrote {result.n_customers:,} customers to {output}")
    err.print(f"wrote the report to {html_path}")


def _write_report(result: Any, path: Path) -> None:
    from rfmflow.report import render_html

    write_text_atomic(path, render_html(result))


def _register() -> None:
    from rfmflow.cli.cluster_cmd import cluster
    from rfmflow.cli.predict_cmd import predict
    from rfmflow.cli.serve_cmd import serve
    from rfmflow.service.cli import db, import_events, keys  # light: libraries load in the commands

    main.add_command(predict)
    main.add_command(cluster)
    main.add_command(serve)
    main.add_command(keys)
    main.add_command(db)
    main.add_command(import_events)
    from rfmflow.cli.worker_cmd import worker  # scoring schedule + automation loop
    from rfmflow.service.cli_scoring import scheme_apply

    main.add_command(worker)
    scheme.add_command(scheme_apply)
    from rfmflow.service.cli_tags import tags

    main.add_command(tags)
    from rfmflow.service.cli_exports import export

    main.add_command(export)
    from rfmflow.service.cli_predictions import predictions

    main.add_command(predictions)
    from rfmflow.service.cli_users import users

    main.add_command(users)
    from rfmflow.automation.cli_broadcasts import broadcasts

    main.add_command(broadcasts)
    from rfmflow.alerts.cli import alerts, reports

    main.add_command(alerts)
    main.add_command(reports)
    from rfmflow.automation.cli_customers import customers
    from rfmflow.automation.cli_workflows import workflows

    main.add_command(workflows)
    main.add_command(customers)


@main.command()
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default="out",
    show_default=True,
    help="Where to write the scores and the report.",
)
@click.option(
    "--scheme", "scheme_name", default="rfm11", show_default=True, help="Built-in scheme or YAML path."
)
@click.option(
    "--predict/--no-predict",
    default=True,
    show_default=True,
    help="Also fit the churn and lifetime-value models (predictions in the rows and the report).",
)
@handle_errors
def demo(out_dir: str, scheme_name: str, predict: bool) -> None:
    """Score the bundled demo data (CDNOW, 23,570 real customers) and write the report."""
    from rfmflow.api import score as score_api
    from rfmflow.cli.render import RichProgress, print_result
    from rfmflow.demo import demo_path

    out, err = consoles()
    with demo_path() as path:
        result = score_api(path, scheme=scheme_name, predict=predict, progress=RichProgress(err))
    print_result(result, out, err)
    target = Path(out_dir)
    result.write(target / "demo-scores.csv")
    _write_report(result, target / "demo-report.html")
    err.print(f"wrote {target / 'demo-scores.csv'} and {target / 'demo-report.html'}")


@main.group()
def scheme() -> None:
    """List, show and check schemes."""


@scheme.command("list")
def scheme_list() -> None:
    """List the built-in schemes."""
    from rfmflow.schemes import builtin_names, load_scheme

    for name in builtin_names():
        s = load_scheme(name)
        click.echo(f"{name:<24} {' '.join(s.description.split())[:90]}")


@scheme.command("show")
@click.argument("name")
@handle_errors
def scheme_show(name: str) -> None:
    """Print a built-in scheme's YAML (copy it to edit: rfmflow scheme show rfm11 > mine.yaml)."""
    from rfmflow.schemes import builtin_text

    click.echo(builtin_text(name), nl=False)


@scheme.command("check")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def scheme_check(file: str, as_json: bool) -> None:
    """Validate a scheme (a YAML file or a built-in name): fields, expressions and coverage.

    Exits 1 when the scheme is invalid or leaves score combinations without a segment.
    """
    from rfmflow.cli.render import print_scheme_check
    from rfmflow.core.coverage import check_coverage
    from rfmflow.schemes import load_scheme

    out, err = consoles()
    s = load_scheme(file)
    coverage = check_coverage(s)
    if as_json:
        click.echo(json.dumps({
            "scheme": s.name, "version": s.version, "valid": True, "complete": coverage.complete,
            "combinations": coverage.combinations, "uncovered": coverage.uncovered,
            "data_dependent": coverage.data_dependent, "never_matching": coverage.never_matching,
            "messages": coverage.messages(),
        }, indent=2))  # fmt: skip
    else:
        print_scheme_check(s, coverage, out)
        for message in coverage.messages():
            err.print(f"[yellow]problem:[/] {escape(message)}", highlight=False)
    if coverage.uncovered or coverage.data_dependent:
        sys.exit(1)
    if not as_json and not coverage.never_matching:
        err.print(f"[green]ok:[/] all {coverage.combinations} score combinations land in exactly one segment")


_register()  # after every group it extends is defined

"""``rfmflow cluster``: data-driven customer groups with K-Means on R/F/M (and predictions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


def _k_range(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in value.split("-"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give two whole numbers such as 2-8", ctx, param) from None
    if not 2 <= low <= high <= 50:
        raise click.BadParameter(f"{value!r}: need 2 <= low <= high <= 50", ctx, param)
    return low, high


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@input_options
@click.option(
    "--k", "k", type=click.IntRange(2, 50), help="Number of clusters (default: chosen by silhouette)."
)
@click.option(
    "--k-range",
    default="3-8",
    show_default=True,
    callback=_k_range,
    metavar="LOW-HIGH",
    help="Cluster counts tried when --k is not given (2 almost always wins on purchase data: one-time "
    "against repeat buyers, hence 3 at least by default).",
)
@click.option("--predict", is_flag=True, help="Fit the models and cluster on p_alive and clv too.")
@prediction_options
@click.option(
    "--sample-size",
    type=click.IntRange(100, 100_000),
    default=10_000,
    show_default=True,
    help="Customers the silhouette is computed on.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same clusters)."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write each customer's cluster (.csv/.parquet/.json).",
)
@click.option(
    "--profiles", "profiles_path", type=click.Path(dir_okay=False), help="Write the cluster profile table."
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False), help="Write an HTML report with charts."
)
@click.option("--json", "as_json", is_flag=True, help="Print the clusters and profiles as JSON.")
@handle_errors
def cluster(
    file: str,
    k: int | None,
    k_range: tuple[int, int],
    predict: bool,
    sample_size: int,
    seed: int,
    output: str | None,
    profiles_path: str | None,
    html_path: str | None,
    as_json: bool,
    **opts: Any,
) -> None:
    """Group the customers of FILE with K-Means on log-scaled, standardised R/F/M.

    k is chosen by the silhouette (shown as a curve) unless --k is given; clusters are
    numbered by mean revenue per customer and named by their centroid profile. The input is
    read as by `rfmflow score`; --predict adds p_alive and clv to the features.
    """
    from rfmflow.api import cluster as cluster_api
    from rfmflow.cli.render import RichProgress

    out, err = consoles()
    check_output_option(output)
    check_output_option(profiles_path)
    settings = prediction_kwargs(opts)
    if settings and not predict:
        raise click.UsageError("model options need --predict")
    run = cluster_api(
        file,
        k=k,
        k_range=k_range,
        predict=predict,
        predictions=settings or None,
        sample_size=sample_size,
        random_state=seed,
        **read_kwargs(opts),
        progress=RichProgress(err),
    )
    if output:
        run.write(output)
    if profiles_path:
        run.write_profiles(profiles_path)
    if as_json:
        payload = run.summary_dict()
        payload["output"] = output
        click.echo(json.dumps(payload, indent=2))
    else:
        print_clusters(run, out, err)
    if html_path:
        from rfmflow.report import render_cluster_html

        write_text_atomic(Path(html_path), render_cluster_html(run))
        err.print(f"wrote the report to {html_path}")
    if output:
        err.print(f"wrote {run.n_customers:,} customers to {output}")
    if profiles_path:
        err.print(f"wrote {run.clusters.k} cluster profiles to {profiles_path}")
    if not (output or as_json):
        err.print("(use -o clusters.csv to write each customer's cluster, --profiles for the table)")


def print_clusters(run: Any, out: Console, err: Console) -> None:
    c = run.clusters
    how = "chosen by silhouette" if c.chosen_automatically else "given"
    err.print(
        f"{c.n_clustered:,} of {c.n_customers:,} customers clustered on {', '.join(c.feature_names)}; "
        f"k = {c.k} ({how}), silhouette {c.silhouette:.3f} on {c.silhouette_sample_size:,} customers"
    )
    if len(c.silhouette_curve) > 1:
        curve = Table(title="Silhouette by number of clusters (higher is better)", title_justify="left")
        curve.add_column("k", justify="right")
        curve.add_column("silhouette", justify="right")
        curve.add_column("")
        best = max(v for _, v in c.silhouette_curve)
        for kk, value in c.silhouette_curve:
            bar = "#" * (round(40 * max(value, 0.0) / best) if best > 0 else 0)
            mark = " <- chosen" if kk == c.k else ""
            curve.add_row(str(kk), f"{value:.3f}", bar + mark)
        out.print(curve)
    table = Table(title="Clusters (0 = highest mean revenue per customer)", title_justify="left")
    features = list(c.profiles[0].mean) if c.profiles else []
    for col in ("cluster", "name", "customers", "share", *(f"mean {f}" for f in features), "revenue share"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for p in c.profiles:
        table.add_row(
            str(p.cluster),
            escape(p.name),
            f"{p.size:,}",
            f"{p.share:.1%}",
            *(_mean(p.mean[f]) for f in features),
            f"{p.revenue_share:.1%}",
        )
    out.print(table)
    for note in [*run.score.notes, *run.notes, *c.notes]:
        err.print(f"[cyan]note:[/] {escape(note)}", highlight=False)


def _mean(value: float) -> str:
    if value != value:
        return "-"
    return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"

"""Rendering results for the terminal with rich."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from rfmflow.core.coverage import Coverage
from rfmflow.core.prediction_results import Comparison, FittedModel, Holdout, PredictionReport
from rfmflow.core.scheme import SCORE_COLUMN, Scheme
from rfmflow.engines.duckdb_engine import Progress as ProgressPort
from rfmflow.result import ScoreResult


class RichProgress(ProgressPort):
    """A transient rich progress bar on stderr (silent when stderr is not a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def start(self, description: str, total: float | None) -> None:
        if not self.console.is_terminal:
            return
        self.bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(description, total=total)

    def update(self, completed: float) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=completed)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        self.bar = None
        self.task = None


def _money(value: float) -> str:
    return f"{value:,.2f}"


def summary_table(result: ScoreResult) -> Table:
    title = (
        f"{result.n_customers:,} customers scored with {result.scheme.name} v{result.scheme.version} "
        f"as of {result.as_of.isoformat()}"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("segment")
    for col in ("customers", "share", "mean R (days)", "mean F", "mean M", "revenue", "revenue share"):
        table.add_column(col, justify="right")
    for s in result.summaries:
        table.add_row(
            s.segment,
            f"{s.customers:,}",
            f"{s.share:.1%}",
            "-" if s.mean_recency_days is None else f"{s.mean_recency_days:,.1f}",
            f"{s.mean_frequency:,.2f}",
            _money(s.mean_monetary),
            _money(float(s.revenue)),
            f"{s.revenue_share:.1%}",
        )
    return table


def _bound(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def thresholds_table(result: ScoreResult) -> Table:
    table = Table(title="Thresholds used (value ranges per score)", title_justify="left")
    table.add_column("score")
    for key in result.bands:
        spec = result.scheme.score_spec(key)  # type: ignore[arg-type]
        kind = "fixed" if spec is not None and spec.edges is not None else "quantile"
        table.add_column(f"{SCORE_COLUMN[key]} ({key}, {kind})", justify="right")
    bins = max((len(b) for b in result.bands.values()), default=0)
    for score in range(bins, 0, -1):
        cells = []
        for bands in result.bands.values():
            band = next((b for b in bands if b.score == score), None)
            if band is None:
                cells.append("")
            elif band.low is None and band.high is None:
                # no customer, or only customers without a value (no qualifying event)
                cells.append(f"(no value)  ({band.customers:,})" if band.customers else "(none)")
            elif band.low is None:
                cells.append(f"<= {_bound(band.high)}  ({band.customers:,})")
            elif band.high is None:
                above = ">" if band.low_open else ">="
                cells.append(f"{above} {_bound(band.low)}  ({band.customers:,})")
            elif band.low_open:
                cells.append(f"> {_bound(band.low)} to {_bound(band.high)}  ({band.customers:,})")
            elif band.low == band.high:
                cells.append(f"{_bound(band.low)}  ({band.customers:,})")
            else:
                cells.append(f"{_bound(band.low)} - {_bound(band.high)}  ({band.customers:,})")
        table.add_row(str(score), *cells)
    return table


def print_result(result: ScoreResult, out: Console, err: Console) -> None:
    label = "default: the day after the last event" if result.as_of_is_default else "given"
    err.print(f"as-of date: {result.as_of.isoformat()} ({label}); time zone {result.timezone}")
    i = result.input
    err.print(
        f"read {i.rows_read:,} rows from {i.source} ({i.first_day} to {i.last_day}); "
        f"columns: " + ", ".join(f"{k}={v}" for k, v in i.columns.items())
    )
    out.print(summary_table(result))
    out.print(thresholds_table(result))
    if result.predictions is not None:
        print_prediction(result.predictions, out, err, currency=result.currency)
    for note in result.notes:
        err.print(f"[cyan]note:[/] {escape(note)}", highlight=False)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning.message)}", highlight=False)
    if i.rows_rejected:
        err.print(
            f"[yellow]{i.rows_rejected:,} rows rejected[/]; details in {i.rejects_path}", highlight=False
        )


def print_scheme_check(scheme: Scheme, coverage: Coverage, out: Console) -> None:
    out.print(
        f"scheme {scheme.name!r} v{scheme.version}: {len(scheme.segments)} segments, {len(scheme.tags)} tags"
    )
    table = Table(title="Segments (first match wins)", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("segment")
    table.add_column("rule")
    table.add_column("score combinations", justify="right")
    for i, seg in enumerate(scheme.segments, start=1):
        sure = len(coverage.by_segment.get(seg.name, []))
        maybe = len(coverage.maybe_by_segment.get(seg.name, []))
        table.add_row(
            str(i), seg.name, str(seg.when), f"{sure}" + (f" (+{maybe} depending on data)" if maybe else "")
        )
    out.print(table)


def _number(value: float) -> str:
    if value != value:  # NaN
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.1f}"
    if magnitude >= 1:
        return f"{value:.4g}" if magnitude < 100 else f"{value:.2f}"
    return f"{value:.4f}"


def model_table(model: FittedModel) -> Table:
    unit = f"; time unit {model.time_unit}" if model.time_unit else ""
    table = Table(
        title=f"{model.name} ({model.customers:,} customers)",
        caption=f"log-likelihood {model.log_likelihood:,.2f}; BIC {model.bic:,.1f}{unit}",
        caption_justify="left",
        title_justify="left",
        min_width=60,
    )
    table.add_column("parameter")
    table.add_column("estimate", justify="right")
    table.add_column("std. error", justify="right")
    for name, value in model.params.items():
        table.add_row(name, _number(value), _number(model.standard_errors.get(name, float("nan"))))
    return table


def holdout_table(holdout: Holdout, unit: str) -> Table:
    table = Table(
        title=f"Holdout {holdout.calibration_end + timedelta(days=1)} to {holdout.as_of} "
        f"({holdout.duration:g} {unit})",
        caption=f"{holdout.actual_total:,} purchases, model {holdout.predicted_total:,.1f}; per customer "
        f"MAE {holdout.mae:.3f}, RMSE {holdout.rmse:.3f}",
        caption_justify="left",
        title_justify="left",
    )
    for col in ("purchases in calibration (x)", "customers", "actual mean", "predicted mean"):
        table.add_column(col, justify="right")
    for row in holdout.by_frequency:
        table.add_row(row.frequency, f"{row.customers:,}", f"{row.actual:.3f}", f"{row.predicted:.3f}")
    return table


def comparison_table(rows: list[Comparison]) -> Table:
    table = Table(title="Model comparison (lower BIC and holdout error are better)", title_justify="left")
    for col in ("model", "log-likelihood", "parameters", "BIC", "holdout MAE", "holdout RMSE"):
        table.add_column(col, justify="right" if col != "model" else "left")
    valid = [r for r in rows if r.error is None]
    best_bic = min((r.bic for r in valid), default=None)
    for r in rows:
        if r.error is not None:
            table.add_row(r.name, f"not fitted: {escape(r.error)}", "", "", "", "")
            continue
        mark = " *" if r.bic == best_bic else ""
        table.add_row(
            r.name + mark,
            f"{r.log_likelihood:,.2f}",
            str(r.parameters),
            f"{r.bic:,.1f}",
            "-" if r.holdout_mae is None else f"{r.holdout_mae:.4f}",
            "-" if r.holdout_rmse is None else f"{r.holdout_rmse:.4f}",
        )
    return table


def print_prediction(
    report: PredictionReport,
    out: Console,
    err: Console,
    *,
    customers: Any = None,
    currency: str | None = None,
) -> None:
    source = f" (loaded from {report.loaded_from})" if report.loaded_from else ""
    err.print(
        f"{report.customers_predicted:,} customers predicted; time unit {report.time_unit}; "
        f"horizon {report.horizon_days} days; CLV over {report.clv_horizon_days} days at "
        f"{report.discount_rate * 100:g}% a year{source}"
    )
    if report.customers_without_transactions:
        err.print(
            f"{report.customers_without_transactions:,} customers have no transaction and get no prediction"
        )
    out.print(model_table(report.purchase_model))
    if report.spend_model is not None:
        out.print(model_table(report.spend_model))
    risk = Table(
        title=f"Churn risk (high: p_alive < {report.churn_thresholds[0]:g}, medium: < "
        f"{report.churn_thresholds[1]:g})",
        title_justify="left",
    )
    for level in ("high", "medium", "low"):
        risk.add_column(level, justify="right")
    total = max(report.customers_predicted, 1)
    risk.add_row(
        *(
            f"{report.churn_counts[k]:,} ({report.churn_counts[k] / total:.1%})"
            for k in ("high", "medium", "low")
        )
    )
    out.print(risk)
    if report.holdout is not None:
        out.print(holdout_table(report.holdout, report.time_unit))
    if report.comparison:
        out.print(comparison_table(report.comparison))
    if customers is not None and customers.num_rows and "clv" in customers.column_names:
        top = customers.sort_by([("clv", "descending")]).slice(0, 10).to_pylist()
        table = Table(
            title="Top 10 customers by CLV" + (f" ({currency})" if currency else ""), title_justify="left"
        )
        for col in (
            "customer_id",
            "x",
            "p_alive",
            "expected_purchases",
            "expected_spend",
            "clv",
            "churn_risk",
        ):
            table.add_column(col, justify="left" if col in ("customer_id", "churn_risk") else "right")
        for row in top:
            table.add_row(
                escape(str(row["customer_id"])),
                str(row["x"]),
                f"{row['p_alive']:.3f}",
                f"{row['expected_purchases']:.3f}",
                "-" if row["expected_spend"] is None else f"{row['expected_spend']:,.2f}",
                "-" if row["clv"] is None else f"{row['clv']:,.2f}",
                str(row["churn_risk"]),
            )
        out.print(table)
    for note in report.notes:
        err.print(f"[cyan]note:[/] {escape(note)}", highlight=False)

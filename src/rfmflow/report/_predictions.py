"""The prediction parts of the reports: the fitted models, churn risk, holdout validation, model
comparison and the frequency/recency matrices of a :class:`PredictionReport`, formatted for the
templates, and the page of a :class:`PredictResult` (``rfmflow predict FILE --html out.html``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfmflow.core.prediction_results import (
    DAYS_PER_UNIT,
    Comparison,
    FittedModel,
    Grid,
    Holdout,
    PredictionReport,
)
from rfmflow.core.results import NO_SEGMENT, SegmentSummary
from rfmflow.report import _format as fmt
from rfmflow.report._charts import Chart
from rfmflow.report._data import float_column
from rfmflow.report._page import Fact, environment
from rfmflow.report._prediction_charts import (
    NO_PREDICTION,
    RISK_LEVELS,
    churn_chart,
    clv_histogram,
    grid_heatmap,
    holdout_chart,
    probability_histogram,
    risk_labels,
    risk_title,
    segment_churn_chart,
)

if TYPE_CHECKING:
    from rfmflow.result import PredictResult

TEMPLATE = "prediction.html.j2"
TOP_CUSTOMERS = 20
BGNBD_CAVEAT = (
    "BG/NBD lets a customer drop out only right after a purchase, so customers without a repeat "
    "purchase get p_alive = 1 (low risk) however long ago they bought; MBG/NBD and Pareto/NBD do not."
)
CORRELATION_LIMIT = 0.3  # the size of r above which the engine warns about Gamma-Gamma's assumption


@dataclass(frozen=True)
class ParamRow:
    """One parameter of a fitted model, formatted."""

    name: str
    estimate: str
    standard_error: str


@dataclass(frozen=True)
class ModelTable:
    """A fitted model: its parameters and how well it fits."""

    id: str
    title: str
    role: str
    rows: list[ParamRow]
    log_likelihood: str
    bic: str
    customers: str
    time_unit: str


@dataclass(frozen=True)
class RiskRow:
    """One churn risk level: what it means and how many customers have it."""

    level: str
    meaning: str
    customers: str
    share: str


@dataclass(frozen=True)
class HoldoutRowView:
    """Customers with one calibration frequency: mean holdout purchases, actual and predicted."""

    frequency: str
    customers: str
    actual: str
    predicted: str


@dataclass(frozen=True)
class HoldoutView:
    """The holdout validation: chart, table and totals."""

    chart: Chart | None
    caption: str
    period: str
    rows: list[HoldoutRowView]
    customers: str
    actual_total: str
    predicted_total: str
    mae: str
    rmse: str


@dataclass(frozen=True)
class ComparisonRow:
    """One candidate model of a comparison, formatted; ``best`` marks the lowest BIC."""

    name: str
    log_likelihood: str
    parameters: str
    bic: str
    mae: str
    rmse: str
    best: bool
    error: str


@dataclass(frozen=True)
class Predictions:
    """What both reports show about the predictions."""

    summary: str
    models: list[ModelTable]
    spend_missing: bool
    correlation: str
    correlation_high: bool
    risk_title: str
    risk_rows: list[RiskRow]
    caveat: str
    churn_chart: Chart
    holdout: HoldoutView | None
    comparison: list[ComparisonRow]
    matrices: list[Chart]
    notes: list[str]


@dataclass(frozen=True)
class SegmentPredictionRow:
    """One segment of a scoring run with predictions: churn risk counts and mean predictions."""

    name: str
    customers: str
    high: str
    medium: str
    low: str
    unpredicted: str
    p_alive: str
    expected_purchases: str
    clv: str
    unmatched: bool


@dataclass(frozen=True)
class SegmentPredictions:
    """The per-segment view of the predictions in the scoring report."""

    chart: Chart | None
    rows: list[SegmentPredictionRow]
    any_unpredicted: bool


@dataclass(frozen=True)
class TopCustomer:
    """One row of the top customers by CLV."""

    customer_id: str
    first_purchase: str
    last_purchase: str
    x: str
    p_alive: str
    expected_purchases: str
    expected_spend: str
    clv: str
    churn_risk: str
    next_purchase: str


# --- shared by both reports ----------------------------------------------------------------------


def predictions_context(report: PredictionReport, *, extra_notes: Iterable[str] = ()) -> Predictions:
    """The fitted models, churn risk, holdout, comparison and matrices of ``report``, formatted."""
    models = [_model_table(report.purchase_model, "purchase model", report.time_unit)]
    if report.spend_model is not None:
        models.append(_model_table(report.spend_model, "spend model", None))
    corr = report.spend_frequency_correlation
    known = corr is not None and math.isfinite(corr)
    high = known and corr is not None and abs(corr) > CORRELATION_LIMIT
    correlation = ""
    if known:
        correlation = (
            f"Correlation between repeat purchases and mean repeat spend: r = {corr:.2f}. The Gamma-Gamma "
            "model assumes they are independent"
            + (
                f"; with |r| above {CORRELATION_LIMIT:g}, expected_spend and clv are less reliable."
                if high
                else f"; |r| up to {CORRELATION_LIMIT:g} is fine."
            )
        )
    holdout = report.holdout
    return Predictions(
        summary=_summary(report),
        models=models,
        spend_missing=report.spend_model is None,
        correlation=correlation,
        correlation_high=high,
        risk_title=risk_title(report.churn_thresholds),
        risk_rows=_risk_rows(report),
        caveat=BGNBD_CAVEAT if report.purchase_model.key == "bgnbd" else "",
        churn_chart=churn_chart(report.churn_counts, report.churn_thresholds),
        holdout=_holdout_view(holdout, report.time_unit) if holdout is not None else None,
        comparison=_comparison_rows(report.comparison),
        matrices=_matrices(report.grids, report),
        notes=_unique([*report.notes, *extra_notes]),
    )


def _summary(report: PredictionReport) -> str:
    """One sentence: the models, horizon and CLV settings."""
    model = report.purchase_model.name
    if report.spend_model is not None:
        model += f" and {report.spend_model.name}"
    if report.loaded_from:
        fitted = f"parameters loaded from {report.loaded_from}, not fitted"
    elif report.calibration_end is not None:
        fitted = f"fitted on the events up to {report.calibration_end.isoformat()}"
    else:
        fitted = "fitted on all events"
    return (
        f"{model}, {fitted}; time unit {report.time_unit}. expected_purchases covers the next "
        f"{_days(report.horizon_days)}; clv the next {_days(report.clv_horizon_days)}, discounted at "
        f"{fmt.percent(report.discount_rate)} a year."
    )


def _days(days: int) -> str:
    return f"{fmt.count(days)} day{'s' if days != 1 else ''}"


def _model_table(model: FittedModel, role: str, time_unit: str | None) -> ModelTable:
    rows = [
        ParamRow(name, fmt.estimate(value), fmt.estimate(model.standard_errors.get(name)))
        for name, value in model.params.items()
    ]
    return ModelTable(
        id=f"model-{model.key}",
        title=model.name,
        role=role,
        rows=rows,
        log_likelihood=fmt.number(model.log_likelihood, 2),
        bic=fmt.number(model.bic, 1),
        customers=fmt.count(model.customers),
        time_unit=time_unit or "",
    )


def _risk_rows(report: PredictionReport) -> list[RiskRow]:
    labels = risk_labels(report.churn_thresholds)
    total = sum(report.churn_counts.get(level, 0) for level in RISK_LEVELS)
    return [
        RiskRow(
            level,
            labels[level],
            fmt.count(report.churn_counts.get(level, 0)),
            fmt.percent(report.churn_counts.get(level, 0) / total) if total else fmt.DASH,
        )
        for level in RISK_LEVELS
    ]


def _holdout_view(holdout: Holdout, unit: str) -> HoldoutView:
    chart = holdout_chart(holdout, unit)
    rows = [
        HoldoutRowView(
            r.frequency,
            fmt.count(r.customers),
            fmt.number(r.actual, 3),
            fmt.number(r.predicted, 3),
        )
        for r in holdout.by_frequency
    ]
    first = holdout.calibration_end + timedelta(days=1)
    return HoldoutView(
        chart=chart,
        caption=chart.caption if chart is not None else "",
        period=f"{first.isoformat()} \u2013 {holdout.as_of.isoformat()} ({holdout.duration:g} {unit})",
        rows=rows,
        customers=fmt.count(holdout.customers),
        actual_total=fmt.count(holdout.actual_total),
        predicted_total=fmt.number(holdout.predicted_total, 1),
        mae=fmt.number(holdout.mae, 3),
        rmse=fmt.number(holdout.rmse, 3),
    )


def _comparison_rows(rows: Sequence[Comparison]) -> list[ComparisonRow]:
    """The comparison table; ``best`` on the fitted model(s) with the lowest BIC."""
    bics = [r.bic for r in rows if r.error is None and math.isfinite(r.bic)]
    best = min(bics) if bics else None
    out: list[ComparisonRow] = []
    for r in rows:
        if r.error is not None:
            out.append(ComparisonRow(r.name, "", "", "", "", "", False, r.error))
            continue
        out.append(
            ComparisonRow(
                name=r.name,
                log_likelihood=fmt.number(r.log_likelihood, 2),
                parameters=str(r.parameters),
                bic=fmt.number(r.bic, 1),
                mae=fmt.number(r.holdout_mae, 4),
                rmse=fmt.number(r.holdout_rmse, 4),
                best=best is not None and r.bic == best,
                error="",
            )
        )
    return out


def _matrices(grids: Sequence[Grid], report: PredictionReport) -> list[Chart]:
    """The probability-alive and expected-purchases matrices as heat maps."""
    unit = report.time_unit
    horizon = report.horizon_days / DAYS_PER_UNIT.get(unit, 1)
    charts: list[Chart] = []
    for index, grid in enumerate(grids):
        values = np.array(grid.values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        probability = "alive" in grid.title.lower() and bool(
            finite.size and finite.min() >= 0 and finite.max() <= 1
        )
        age = f"{grid.age:.1f} {unit}"
        if probability:
            chart = grid_heatmap(
                grid,
                chart_id="chart-grid-alive",
                unit=unit,
                bar_label="p_alive",
                cmap="YlGnBu",
                probability=True,
                thresholds=report.churn_thresholds,
                caption=(
                    f"Probability that a customer is still alive, by repeat purchases x (rows) and the "
                    f"time of the last one after the first, t_x (columns), for a customer first seen {age} "
                    "before the end (the oldest). Recent, frequent buyers (top right) are the safest; "
                    "frequent buyers who stopped long ago (top left) are likely gone. Row 0 has no "
                    "repeat purchase, so no recency. Dashed lines: the churn risk thresholds."
                ),
            )
        else:
            expected = "expected" in grid.title.lower()
            chart = grid_heatmap(
                grid,
                chart_id="chart-grid-expected" if expected else f"chart-grid-{index + 1}",
                unit=unit,
                bar_label=f"expected purchases in the next {_days(report.horizon_days)}"
                if expected
                else "value",
                cmap="Oranges",
                caption=(
                    f"Same customers (first seen {age} before the end): "
                    + (
                        f"expected purchases in the next {horizon:.3g} {unit} "
                        f"({_days(report.horizon_days)}). "
                        if expected
                        else ""
                    )
                    + "Rows: repeat purchases x; columns: time of the last purchase after the first, t_x."
                ),
            )
        if chart is not None:
            charts.append(chart)
    return charts


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- the scoring report: predictions per segment -------------------------------------------------


def segment_predictions(
    table: pa.Table, summaries: Sequence[SegmentSummary], thresholds: tuple[float, float]
) -> SegmentPredictions:
    """Customers by churn risk, mean p_alive and expected purchases and total clv per segment."""
    if "segment" not in table.column_names or "churn_risk" not in table.column_names:
        return SegmentPredictions(None, [], False)
    segment = pc.fill_null(table.column("segment").cast(pa.string()), NO_SEGMENT)
    risk = pc.fill_null(table.column("churn_risk").cast(pa.string()), NO_PREDICTION)
    counted = (
        pa.table({"segment": segment, "risk": risk})
        .group_by(["segment", "risk"])
        .aggregate([([], "count_all")])
    )
    values = {
        "segment": segment,
        **{name: _float_or_null(table, name) for name in ("p_alive", "expected_purchases", "clv")},
    }
    means = (
        pa.table(values)
        .group_by("segment")
        .aggregate([("p_alive", "mean"), ("expected_purchases", "mean"), ("clv", "sum")])
    )
    names = _segment_order(summaries, counted.column("segment").to_pylist())
    levels = [*RISK_LEVELS, NO_PREDICTION]
    counts = np.zeros((len(names), len(levels)), dtype=np.int64)
    where = {name: i for i, name in enumerate(names)}
    for seg, level, n in zip(
        counted.column("segment").to_pylist(),
        counted.column("risk").to_pylist(),
        counted.column("count_all").to_pylist(),
        strict=True,
    ):
        column = levels.index(level) if level in levels else len(levels) - 1
        counts[where[seg], column] += int(n)
    stats = {
        seg: (p, e, c)
        for seg, p, e, c in zip(
            means.column("segment").to_pylist(),
            means.column("p_alive_mean").to_pylist(),
            means.column("expected_purchases_mean").to_pylist(),
            means.column("clv_sum").to_pylist(),
            strict=True,
        )
    }
    any_unpredicted = bool(counts[:, -1].sum())
    shown = levels if any_unpredicted else list(RISK_LEVELS)
    chart = segment_churn_chart(names, counts[:, : len(shown)], shown, thresholds)
    rows = []
    for i, name in enumerate(names):
        p_alive, expected, clv = stats.get(name, (None, None, None))
        rows.append(
            SegmentPredictionRow(
                name=name,
                customers=fmt.count(int(counts[i].sum())),
                high=fmt.count(int(counts[i, 0])),
                medium=fmt.count(int(counts[i, 1])),
                low=fmt.count(int(counts[i, 2])),
                unpredicted=fmt.count(int(counts[i, 3])),
                p_alive=fmt.number(p_alive, 3),
                expected_purchases=fmt.number(expected, 2),
                clv=fmt.number(clv, 2),
                unmatched=name == NO_SEGMENT,
            )
        )
    return SegmentPredictions(chart, rows, any_unpredicted)


def _float_or_null(table: pa.Table, name: str) -> pa.Array:
    """Column ``name`` as float64 (NaN as null), or all nulls when absent or not numeric."""
    values = float_column(table, name)
    if values is None:
        return pa.nulls(table.num_rows, pa.float64())
    return pa.array(values, pa.float64(), from_pandas=True)


def _segment_order(summaries: Sequence[SegmentSummary], seen: Sequence[Any]) -> list[str]:
    """The segments in the summary table's order, then any others seen in the rows."""
    order = [s.segment for s in summaries]
    return _unique([*order, *(str(s) for s in seen)]) if seen else order


# --- the prediction report -----------------------------------------------------------------------


def render_prediction_html(result: PredictResult) -> str:
    """Render a prediction run as one self-contained HTML page (inline CSS and SVG charts, no scripts)."""
    return environment().get_template(TEMPLATE).render(**_prediction_page(result))


def _prediction_page(result: PredictResult) -> dict[str, Any]:
    report = result.report
    table = result.customers
    clv = float_column(table, "clv")
    p_alive = float_column(table, "p_alive")
    distributions = [
        chart
        for chart in (
            probability_histogram(p_alive, report.churn_thresholds) if p_alive is not None else None,
            clv_histogram(clv, horizon_days=report.clv_horizon_days, currency=result.currency)
            if clv is not None
            else None,
        )
        if chart is not None
    ]
    return {
        "title": f"Prediction report \u2014 {report.purchase_model.name} \u2014 {result.as_of.isoformat()}",
        "model_name": report.purchase_model.name,
        "as_of": result.as_of.isoformat(),
        "facts": _facts(result),
        "p": predictions_context(report, extra_notes=result.notes),
        "distributions": distributions,
        "clv_missing": clv is None,
        "top": _top_customers(table),
        "top_count": TOP_CUSTOMERS,
        "currency": result.currency or "",
    }


def _facts(result: PredictResult) -> list[Fact]:
    """The header: what was predicted, from what, with which models and settings."""
    report = result.report
    model = report.purchase_model.name
    if report.spend_model is not None:
        model += f" + {report.spend_model.name}"
    rejected = fmt.count(result.rows_rejected)
    if result.rows_rejected and result.rejects_path:
        rejected += f" (see {result.rejects_path})"
    facts = [
        Fact("Source", result.source or fmt.DASH),
        Fact(
            "As of",
            result.as_of.isoformat(),
            "(default: day after the last event)" if result.as_of_is_default else "",
        ),
    ]
    if report.calibration_end is not None:
        facts.append(
            Fact(
                "Calibration end",
                report.calibration_end.isoformat(),
                "the holdout starts the day after"
                if report.loaded_from
                else "models fitted on the events up to this day; the rest is the holdout",
            )
        )
    facts += [
        Fact("Customers predicted", fmt.count(report.customers_predicted)),
        Fact(
            "Customers without transactions",
            fmt.count(report.customers_without_transactions),
            "no prediction for them" if report.customers_without_transactions else "",
        ),
        Fact(
            "Model",
            model,
            "parameters loaded, not fitted" if report.loaded_from else "fitted by maximum likelihood",
        ),
        Fact("Time unit", report.time_unit),
        Fact("Horizon", _days(report.horizon_days), "expected_purchases"),
        Fact(
            "CLV",
            f"{_days(report.clv_horizon_days)} at {fmt.percent(report.discount_rate)} a year",
            "horizon and annual discount rate",
        ),
        Fact(
            "Currency",
            result.currency or fmt.DASH,
            "" if result.currency else "amounts are not money or not given",
        ),
        Fact("Rows rejected", rejected),
    ]
    if report.loaded_from:
        facts.append(Fact("Loaded from", report.loaded_from))
    return facts


def _top_customers(table: pa.Table) -> list[TopCustomer]:
    """The customers with the highest clv (those without one left out)."""
    if "clv" not in table.column_names or table.num_rows == 0:
        return []
    valued = table.filter(pc.is_valid(table.column("clv")))
    if valued.num_rows == 0:
        return []
    top = valued.sort_by([("clv", "descending")]).slice(0, TOP_CUSTOMERS).to_pylist()
    return [
        TopCustomer(
            customer_id=_text(row.get("customer_id")),
            first_purchase=_text(row.get("first_purchase")),
            last_purchase=_text(row.get("last_purchase")),
            x=_text(row.get("x")),
            p_alive=_float(row.get("p_alive"), 3),
            expected_purchases=_float(row.get("expected_purchases"), 2),
            expected_spend=_float(row.get("expected_spend"), 2),
            clv=_float(row.get("clv"), 2),
            churn_risk=_text(row.get("churn_risk")),
            next_purchase=_text(row.get("expected_next_purchase")),
        )
        for row in top
    ]


def _text(value: object) -> str:
    if value is None:
        return fmt.DASH
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        return fmt.count(value)
    return str(value)


def _float(value: object, digits: int) -> str:
    if value is None:
        return fmt.DASH
    try:
        return fmt.number(float(value), digits)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)

"""Assemble the report: figures, tables and facts of a :class:`ScoreResult`, rendered with Jinja2."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rfmflow.core.results import NO_SEGMENT, ScoreBand, SegmentSummary
from rfmflow.core.scheme import SCORE_COLUMN, SCORE_KEYS, Scheme, ScoreKey
from rfmflow.report import _format as fmt
from rfmflow.report._charts import (
    Chart,
    count_heatmap,
    histogram_chart,
    revenue_heatmap,
    rf_grid,
    segment_chart,
)
from rfmflow.report._data import float_column, metric, score_bins, score_column
from rfmflow.report._page import Fact, environment
from rfmflow.report._predictions import predictions_context, segment_predictions

if TYPE_CHECKING:
    from rfmflow.result import ScoreResult

TEMPLATE = "report.html.j2"
METRIC_TITLES: dict[ScoreKey, str] = {
    "recency": "Recency: days since the last qualifying event",
    "frequency": "Frequency: qualifying events",
    "monetary": "Monetary value",
}


@dataclass(frozen=True)
class SegmentRow:
    """One row of the segment summary table, formatted for display."""

    name: str
    description: str
    action: str
    customers: str
    share: str
    recency: str
    frequency: str
    monetary: str
    revenue: str
    revenue_share: str
    unmatched: bool


@dataclass(frozen=True)
class BandRow:
    """One score of a thresholds table, formatted for display."""

    score: int
    low: str
    high: str
    customers: str
    share: str


@dataclass(frozen=True)
class Thresholds:
    """The thresholds of one score (recency, frequency or monetary)."""

    key: str
    column: str
    method: str
    rows: list[BandRow]


def render_html(result: ScoreResult) -> str:
    """Render ``result`` as one self-contained HTML page (inline CSS and SVG charts, no scripts)."""
    return environment().get_template(TEMPLATE).render(**_context(result))


def _context(result: ScoreResult) -> dict[str, Any]:
    """Everything the template shows, already formatted."""
    revenue_label = _revenue_label(result.scheme)
    return {
        "title": f"RFM report \u2014 {result.scheme.name} \u2014 {result.as_of.isoformat()}",
        "scheme": result.scheme,
        "as_of": result.as_of.isoformat(),
        "facts": _facts(result),
        "warnings": list(result.warnings),
        "notes": list(result.notes),
        "segments": _segment_rows(result.summaries, result.scheme, result.currency),
        "total_customers": fmt.count(result.n_customers),
        "revenue_label": revenue_label,
        "currency": result.currency or "",
        "segment_chart": segment_chart(result.summaries, revenue_label=revenue_label),
        "heatmaps": _heatmaps(result, revenue_label),
        "distributions": _distributions(result),
        "thresholds": _thresholds(result),
        "predictions": _predictions(result),
    }


def _predictions(result: ScoreResult) -> dict[str, Any] | None:
    """The predictions section, or ``None`` when the run made no predictions."""
    report = result.predictions
    if report is None:
        return None
    return {
        "p": predictions_context(report),
        "segments": segment_predictions(result.customers, result.summaries, report.churn_thresholds),
        "currency": result.currency or "",
    }


def _revenue_label(scheme: Scheme) -> str:
    """``revenue`` when M is money, else the neutral ``monetary``."""
    return "revenue" if scheme.metrics.monetary.measure == "amount" else "monetary"


def _facts(result: ScoreResult) -> list[Fact]:
    """The header: what was scored, from what, as of when."""
    stats = result.input
    scheme = f"{result.scheme.name} v{result.scheme.version}"
    rejected = fmt.count(stats.rows_rejected)
    if stats.rows_rejected and stats.rejects_path:
        rejected += f" (see {stats.rejects_path})"
    return [
        Fact("Scheme", scheme, result.scheme.description),
        Fact(
            "As of",
            result.as_of.isoformat(),
            "(default: day after the last event)" if result.as_of_is_default else "",
        ),
        Fact("Time zone", result.timezone),
        Fact(
            "Currency",
            result.currency or fmt.DASH,
            "" if result.currency else "monetary is not money or not given",
        ),
        Fact("Source", stats.source or fmt.DASH),
        Fact("Rows read", fmt.count(stats.rows_read)),
        Fact("Rows rejected", rejected),
        Fact("Customers", fmt.count(result.n_customers)),
        Fact("Data range", _date_range(result)),
    ]


def _date_range(result: ScoreResult) -> str:
    """``first \u2013 last (N days)`` of the input events."""
    first, last = result.input.first_day, result.input.last_day
    if first is None or last is None:
        return fmt.DASH
    days = (last - first).days + 1
    return f"{first.isoformat()} \u2013 {last.isoformat()} ({fmt.count(days)} day{'s' if days != 1 else ''})"


def _segment_rows(
    summaries: Sequence[SegmentSummary], scheme: Scheme, currency: str | None
) -> list[SegmentRow]:
    """The segment summary table, with each segment's description and action from the scheme."""
    rules = {rule.name: rule for rule in scheme.segments}
    rows: list[SegmentRow] = []
    for s in summaries:
        rule = rules.get(s.segment)
        rows.append(
            SegmentRow(
                name=s.segment,
                description=rule.description if rule else _unmatched(s.segment),
                action=rule.action if rule and rule.action else "",
                customers=fmt.count(s.customers),
                share=fmt.percent(s.share),
                recency=fmt.number(s.mean_recency_days, 1),
                frequency=fmt.number(s.mean_frequency, 2),
                monetary=fmt.number(s.mean_monetary, 2),
                revenue=fmt.number(s.revenue, 2),
                revenue_share=fmt.percent(s.revenue_share),
                unmatched=s.segment == NO_SEGMENT,
            )
        )
    return rows


def _unmatched(segment: str) -> str:
    """The description of a segment the scheme does not define."""
    return "no segment rule matched" if segment == NO_SEGMENT else ""


def _heatmaps(result: ScoreResult, revenue_label: str) -> list[Chart]:
    """The R x F grids: by customers and, when there is a monetary column, by its sum."""
    table = result.customers
    r_scores, f_scores = score_column(table, "r_score"), score_column(table, "f_score")
    if r_scores is None or f_scores is None:
        return []
    r_bins = score_bins(result.scheme, "recency", r_scores)
    f_bins = score_bins(result.scheme, "frequency", f_scores)
    counts = rf_grid(r_scores, f_scores, r_bins, f_bins)
    charts = [count_heatmap(counts)]
    monetary = float_column(table, "monetary")
    if monetary is not None:
        revenue = rf_grid(r_scores, f_scores, r_bins, f_bins, weights=monetary)
        charts.append(revenue_heatmap(revenue, counts, revenue_label=revenue_label))
    return charts


def _distributions(result: ScoreResult) -> list[Chart]:
    """One histogram per scored metric; none for M in RF-only schemes (or when m_score is empty)."""
    charts: list[Chart] = []
    for key in SCORE_KEYS:
        if not _is_scored(result, key):
            continue
        values = metric(result.customers, result.scheme, key)
        if values is None:
            continue
        xlabel = values.column
        if key == "monetary" and result.currency:
            xlabel += f" ({result.currency})"
        chart = histogram_chart(
            values,
            result.bands.get(key, []),
            title=METRIC_TITLES[key],
            xlabel=xlabel,
            skewed=key != "recency",
        )
        if chart is not None:
            charts.append(chart)
    return charts


def _is_scored(result: ScoreResult, key: ScoreKey) -> bool:
    """Whether the scheme scores ``key`` and the table has any score for it."""
    if result.scheme.score_spec(key) is None:
        return False
    return score_column(result.customers, SCORE_COLUMN[key]) is not None


def _thresholds(result: ScoreResult) -> list[Thresholds]:
    """Per scored key: score -> low..high and customers."""
    out: list[Thresholds] = []
    for key in SCORE_KEYS:
        bands = result.bands.get(key)
        spec = result.scheme.score_spec(key)
        if not bands or spec is None:
            continue
        out.append(Thresholds(key, SCORE_COLUMN[key], _method(result.scheme, key), _band_rows(bands)))
    return out


def _method(scheme: Scheme, key: ScoreKey) -> str:
    """How ``key`` is scored, in words."""
    spec = scheme.score_spec(key)
    if spec is None:
        return "not scored"
    if spec.quantiles is not None:
        text = f"{spec.quantiles} quantile bins (equal shares of customers, ties kept together)"
    else:
        text = "fixed upper-inclusive edges " + ", ".join(str(e) for e in spec.edges or [])
    if scheme.lifecycle is not None and getattr(scheme.lifecycle.scores, key) is not None:
        text += "; new customers use the lifecycle thresholds"
    return text


def _band_rows(bands: Sequence[ScoreBand]) -> list[BandRow]:
    """The rows of one thresholds table, best score first."""
    total = sum(b.customers for b in bands)
    return [
        BandRow(
            b.score,
            ("> " if b.low_open and b.low is not None else "") + fmt.bound(b.low),
            fmt.bound(b.high),
            fmt.count(b.customers),
            fmt.percent(b.customers / total) if total else fmt.DASH,
        )
        for b in sorted(bands, key=lambda b: b.score, reverse=True)
    ]

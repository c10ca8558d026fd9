"""The prediction charts (churn risk, holdout validation, frequency/recency matrices, p_alive and
CLV distributions), drawn with matplotlib as inline SVG in the style of :mod:`._charts`.

Every function takes aggregated data or numpy arrays: nothing loops over customers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np

from rfmflow.core.prediction_results import Grid, Holdout
from rfmflow.report import _format as fmt
from rfmflow.report._charts import (
    BOUNDARY_COLOR,
    CUSTOMERS_COLOR,
    LABEL_BOX,
    LINSCALE,
    LINTHRESH,
    REVENUE_COLOR,
    Chart,
    Layout,
    _cell_font_size,
    _layout,
    _norm,
)
from rfmflow.report._data import FloatArray, IntArray
from rfmflow.report._svg import chart_context, figure_to_svg, new_figure, plain

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Churn risk levels, worst first, and what the charts call a customer without a prediction.
RISK_LEVELS = ("high", "medium", "low")
NO_PREDICTION = "no prediction"
RISK_COLORS = {"high": "#c0392b", "medium": "#e0a030", "low": "#3c9a5f", NO_PREDICTION: "#b0b7c0"}
PROBABILITY_BINS = 20
MAX_CELL_TEXT = 12  # frequency/recency matrices up to this many rows and columns print their values
CONTOUR_COLOR = "#1f2933"
SPIKE_RATIO = 4.0  # a CLV bar this many times taller than the next gets a logarithmic customer axis


def risk_labels(thresholds: tuple[float, float]) -> dict[str, str]:
    """What each churn risk level means in p_alive: ``{"high": "p_alive < 0.3", ...}``."""
    high, medium = (fmt.bound(t) for t in thresholds)
    return {
        "high": f"p_alive < {high}",
        "medium": f"{high} \u2264 p_alive < {medium}",
        "low": f"p_alive \u2265 {medium}",
    }


def risk_title(thresholds: tuple[float, float]) -> str:
    """``Churn risk (high: p_alive < 0.3, medium: < 0.7, low: the rest)``."""
    high, medium = (fmt.bound(t) for t in thresholds)
    return f"Churn risk (high: p_alive < {high}, medium: < {medium}, low: \u2265 {medium})"


# --- churn risk ----------------------------------------------------------------------------------


def churn_chart(
    counts: Mapping[str, int], thresholds: tuple[float, float], *, prefix: str = "churn"
) -> Chart:
    """Horizontal bars: customers at high, medium and low churn risk, with count and share."""
    values = np.array([counts.get(level, 0) for level in RISK_LEVELS], dtype=np.float64)
    total = float(values.sum())
    labels = risk_labels(thresholds)
    positions = np.arange(len(RISK_LEVELS), dtype=np.float64)
    with chart_context():
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        fig = new_figure(5.4, 2.6)
        ax = fig.add_subplot()
        ax.barh(positions, values, height=0.6, color=[RISK_COLORS[level] for level in RISK_LEVELS])
        for pos, value in zip(positions, values, strict=True):
            share = f" ({fmt.percent(value / total)})" if total else ""
            ax.annotate(
                plain(fmt.count(int(value)) + share),
                xy=(value, pos),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                ha="left",
                fontsize=8.5,
                color="#333333",
            )
        ax.set_yticks(positions, [plain(f"{level}\n{labels[level]}") for level in RISK_LEVELS])
        ax.invert_yaxis()
        ax.set_xlim(0, max(float(values.max()), 1.0) * 1.35)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: plain(fmt.compact(v))))
        ax.set_xlabel("customers")
        svg = figure_to_svg(fig, prefix=prefix, label="Customers by churn risk")
    return Chart(
        f"chart-{prefix}",
        risk_title(thresholds),
        svg,
        "Customers by churn risk, from their probability of being alive (p_alive) as of the end date.",
    )


def segment_churn_chart(
    segments: Sequence[str], counts: IntArray, levels: Sequence[str], thresholds: tuple[float, float]
) -> Chart | None:
    """100%-stacked horizontal bars: each segment's customers by churn risk (``counts[segment, level]``)."""
    totals = counts.sum(axis=1).astype(np.float64)
    if not len(segments) or float(totals.sum()) == 0:
        return None
    shares = counts / np.where(totals > 0, totals, 1.0)[:, None] * 100
    positions = np.arange(len(segments), dtype=np.float64)
    labels = risk_labels(thresholds)
    with chart_context():
        from matplotlib.ticker import PercentFormatter

        fig = new_figure(7.5, 0.45 * len(segments) + 1.5)
        ax = fig.add_subplot()
        left = np.zeros(len(segments), dtype=np.float64)
        for index, level in enumerate(levels):
            width = shares[:, index]
            legend = f"{level} ({labels[level]})" if level in labels else level
            ax.barh(positions, width, left=left, height=0.7, color=RISK_COLORS[level], label=plain(legend))
            for pos, start, share in zip(positions, left, width, strict=True):
                if share >= 9:  # room for the text
                    ax.text(
                        start + share / 2,
                        pos,
                        f"{share:.0f}%",
                        ha="center",
                        va="center",
                        fontsize=7.5,
                        color="white" if level != NO_PREDICTION else "#1a1a1a",
                    )
            left += width
        for pos, total in zip(positions, totals, strict=True):
            ax.annotate(
                plain(fmt.count(int(total))),
                xy=(100, pos),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                ha="left",
                fontsize=7.5,
                color="#333333",
            )
        ax.set_yticks(positions, [plain(s) for s in segments])
        ax.invert_yaxis()
        ax.set_xlim(0, 112)
        ax.set_xticks([0, 25, 50, 75, 100])
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=0))
        ax.set_xlabel("share of the segment's customers (customers at the right)")
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False, fontsize=8)
        svg = figure_to_svg(fig, prefix="segment-churn", label="Churn risk per segment")
    return Chart(
        "chart-segment-churn",
        "Each segment's customers by churn risk",
        svg,
        "Each bar splits one segment's customers by churn risk; the number after the bar is the "
        "segment's customers.",
    )


# --- holdout validation --------------------------------------------------------------------------


def holdout_chart(holdout: Holdout, unit: str, *, prefix: str = "holdout") -> Chart | None:
    """The calibration/holdout plot: customers grouped by their purchases in the calibration period,
    mean actual and predicted purchases per customer in the holdout period."""
    rows = holdout.by_frequency
    if not rows:
        return None
    positions = np.arange(len(rows), dtype=np.float64)
    actual = np.array([r.actual for r in rows], dtype=np.float64)
    predicted = np.array([r.predicted for r in rows], dtype=np.float64)
    with chart_context():
        fig = new_figure(5.8, 3.8)
        ax = fig.add_subplot()
        ax.plot(positions, actual, marker="o", color=CUSTOMERS_COLOR, linewidth=1.8, label="actual")
        ax.plot(
            positions,
            predicted,
            marker="s",
            linestyle="--",
            color=REVENUE_COLOR,
            linewidth=1.8,
            label="model",
        )
        ax.set_xticks(positions, [plain(f"{r.frequency}\nn={fmt.compact(r.customers)}") for r in rows])
        top = float(np.nanmax(np.concatenate([actual, predicted]))) if rows else 0.0
        ax.set_ylim(0, (top if math.isfinite(top) and top > 0 else 1.0) * 1.12)
        ax.set_xlim(-0.4, len(rows) - 0.6)
        ax.grid(axis="y", color="#e3e7ec", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.set_xlabel("repeat purchases in the calibration period (n = customers)")
        ax.set_ylabel(plain(f"mean purchases per customer\nin the holdout ({holdout.duration:g} {unit})"))
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False)
        svg = figure_to_svg(fig, prefix=prefix, label="Holdout purchases: actual and model")
    return Chart(f"chart-{prefix}", "Calibration vs holdout: actual and model", svg, holdout_caption(holdout))


def holdout_caption(holdout: Holdout) -> str:
    """The holdout's totals and errors in words."""
    first = (holdout.calibration_end + timedelta(days=1)).isoformat()
    total = (
        f"{fmt.count(holdout.actual_total)} purchases actually made, {fmt.number(holdout.predicted_total)} "
    )
    if holdout.actual_total:
        gap = holdout.predicted_total / holdout.actual_total - 1
        total += f"predicted ({'+' if gap >= 0 else ''}{fmt.percent(gap)})"
    else:
        total += "predicted"
    return (
        f"Fitted on the purchases up to {holdout.calibration_end.isoformat()}; holdout {first} to "
        f"{holdout.as_of.isoformat()}. {fmt.count(holdout.customers)} customers: {total}. Error per "
        f"customer: MAE {fmt.number(holdout.mae, 3)}, RMSE {fmt.number(holdout.rmse, 3)} purchases."
    )


# --- frequency / recency matrices ----------------------------------------------------------------


def grid_heatmap(
    grid: Grid,
    *,
    chart_id: str,
    unit: str,
    bar_label: str,
    cmap: str,
    caption: str,
    probability: bool = False,
    thresholds: tuple[float, float] | None = None,
) -> Chart | None:
    """A frequency (rows, growing upward) by recency (columns) matrix, as in the literature's
    probability-alive plot; ``probability`` fixes the colour scale to 0..1 and draws ``thresholds``."""
    values = np.array(grid.values, dtype=np.float64)
    if values.ndim != 2 or values.size == 0 or values.shape != (len(grid.frequencies), len(grid.recencies)):
        return None
    values = np.where(np.isfinite(values), values, np.nan)
    freqs = np.array(grid.frequencies, dtype=np.float64)
    recs = np.array(grid.recencies, dtype=np.float64)
    with chart_context():
        from matplotlib.colors import Normalize
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        fig = new_figure(5.8, 4.8)
        ax = fig.add_subplot()
        if probability:
            from matplotlib import colormaps

            norm, colormap = Normalize(vmin=0.0, vmax=1.0), colormaps[cmap]
        else:
            norm, colormap = _norm(np.nan_to_num(values), cmap)
        mesh = ax.pcolormesh(
            _edges(recs),
            _edges(freqs),
            np.ma.masked_invalid(values),
            cmap=colormap,
            norm=norm,
            edgecolors="face",
            linewidth=0.2,
        )
        rows, cols = values.shape
        if rows <= MAX_CELL_TEXT and cols <= MAX_CELL_TEXT:
            size = _cell_font_size(max(rows, cols))
            for (row, col), value in np.ndenumerate(values):
                if not math.isfinite(value):
                    continue
                ax.text(
                    float(recs[col]),
                    float(freqs[row]),
                    plain(_cell_text(float(value), probability)),
                    ha="center",
                    va="center",
                    fontsize=size,
                    color="white" if float(norm(value)) > 0.6 else "#1a1a1a",
                )
        if probability and thresholds is not None:
            _threshold_contours(ax, recs, freqs, values, thresholds)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: plain(fmt.compact(v))))
        ax.set_xlabel(plain(f"recency t_x: {unit} from first to last purchase"))
        ax.set_ylabel("frequency x: repeat purchases")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        formatter = FuncFormatter(lambda v, _pos: plain(f"{v:.1f}" if probability else _tick(v)))
        bar = fig.colorbar(mesh, ax=ax, shrink=0.85, format=formatter)
        bar.set_label(plain(bar_label))
        bar.outline.set_visible(False)
        svg = figure_to_svg(fig, prefix=chart_id.removeprefix("chart-"), label=grid.title)
    return Chart(chart_id, grid.title, svg, caption)


def _edges(centres: FloatArray) -> FloatArray:
    """Cell edges around ``centres``: half-way between neighbours, half a step beyond the ends."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5], dtype=np.float64)
    middle = (centres[:-1] + centres[1:]) / 2
    first = centres[0] - (middle[0] - centres[0])
    last = centres[-1] + (centres[-1] - middle[-1])
    return np.concatenate([[first], middle, [last]]).astype(np.float64)


def _tick(value: float) -> str:
    """A colour bar tick: ``2.5``, ``10``, ``12.5k``."""
    return fmt.compact(value) if abs(value) >= 1e4 else fmt.bound(value)


def _cell_text(value: float, probability: bool) -> str:
    if probability:
        return f"{value:.2f}"
    return fmt.compact(value) if abs(value) >= 10 else f"{value:.2f}"


def _threshold_contours(
    ax: Axes, recs: FloatArray, freqs: FloatArray, values: FloatArray, thresholds: tuple[float, float]
) -> None:
    """Dashed lines where p_alive crosses the churn risk thresholds (only levels the grid reaches)."""
    if freqs.size and freqs[0] == 0:  # no repeat purchase, no recency: row 0 is one value, leave it out
        freqs, values = freqs[1:], values[1:]
    if values.shape[0] < 2 or values.shape[1] < 2 or not np.isfinite(values).all():
        return
    low, high = float(values.min()), float(values.max())
    levels = sorted({t for t in thresholds if low < t < high})
    if not levels:
        return
    lines = ax.contour(
        recs, freqs, values, levels=levels, colors=CONTOUR_COLOR, linewidths=1.0, linestyles="dashed"
    )
    ax.clabel(lines, fmt={level: fmt.bound(level) for level in levels}, fontsize=7, inline=True)


# --- distributions -------------------------------------------------------------------------------


def probability_histogram(values: FloatArray, thresholds: tuple[float, float]) -> Chart | None:
    """Histogram of p_alive on 0..1 with the churn risk thresholds as dashed lines."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    edges = np.linspace(0.0, 1.0, PROBABILITY_BINS + 1)
    counts, _ = np.histogram(np.clip(finite, 0.0, 1.0), bins=edges)
    with chart_context():
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        fig = new_figure(6.4, 3.6)
        ax = fig.add_subplot()
        ax.stairs(counts, edges, fill=True, color=CUSTOMERS_COLOR, alpha=0.85)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0, max(float(counts.max()), 1.0) * 1.08)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: plain(fmt.compact(v))))
        bounds = [0.0, *sorted(thresholds), 1.0]
        for x in bounds[1:-1]:
            ax.axvline(x, color=BOUNDARY_COLOR, linestyle="--", linewidth=1.0)
            ax.text(
                x,
                0.97,
                plain(f"{fmt.bound(x)} "),
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="right",
                va="top",
                fontsize=7,
                color=BOUNDARY_COLOR,
                bbox=LABEL_BOX,
            )
        for level, left, right in zip(RISK_LEVELS, bounds, bounds[1:], strict=False):
            if right - left < 0.06:
                continue
            ax.text(
                (left + right) / 2,
                1.01,
                level,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
                fontweight="bold",
                color=RISK_COLORS[level],
            )
        ax.set_xlabel("p_alive: probability the customer is still active")
        ax.set_ylabel("customers")
        svg = figure_to_svg(fig, prefix="hist-p-alive", label="Distribution of p_alive")
    missing = values.size - finite.size
    caption = "Bars of width 0.05; dashed lines: the churn risk thresholds, labels above: the risk level."
    if missing:
        caption += f" {fmt.count(missing)} customers have no p_alive and are not shown."
    return Chart("chart-p-alive", "Probability alive (p_alive)", svg, caption)


def clv_histogram(values: FloatArray, *, horizon_days: int, currency: str | None) -> Chart | None:
    """Histogram of CLV; its long tail goes on a logarithmic axis (or a clipped one for whole numbers)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    layout = _layout(finite, skewed=True)
    counts, _ = np.histogram(finite, bins=layout.edges)
    median = float(np.median(finite))
    ordered = np.sort(counts)
    spike = counts.size > 1 and float(ordered[-1]) > SPIKE_RATIO * max(float(ordered[-2]), 1.0)
    with chart_context():
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        fig = new_figure(6.4, 3.6)
        ax = fig.add_subplot()
        if layout.log:
            ax.set_xscale("symlog", linthresh=LINTHRESH, linscale=LINSCALE)
        ax.stairs(counts, layout.edges, fill=True, color=REVENUE_COLOR, alpha=0.85)
        ax.set_xlim(layout.low, layout.high)
        compact = FuncFormatter(lambda v, _pos: plain(fmt.compact(v)))
        ax.xaxis.set_major_formatter(compact)
        if spike:  # one bar dwarfs the rest: counts on a log axis (linear up to 1, so single customers show)
            ax.set_yscale("symlog", linthresh=1.0, linscale=0.3)
            ax.set_ylim(0, float(counts.max()) * 1.6)
        else:
            ax.set_ylim(0, max(float(counts.max()), 1.0) * 1.08)
            ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.yaxis.set_major_formatter(compact)
        if layout.low <= median <= layout.high:
            ax.axvline(median, color=BOUNDARY_COLOR, linestyle="--", linewidth=1.0)
            ax.text(
                median,
                0.97,
                plain(f"median {fmt.compact(median)} "),
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="right",
                va="top",
                fontsize=7,
                color=BOUNDARY_COLOR,
                bbox=LABEL_BOX,
            )
        unit = f" ({currency})" if currency else ""
        ax.set_xlabel(plain(f"clv{unit}" + (" (log scale)" if layout.log else "")))
        ax.set_ylabel("customers" + (" (log scale)" if spike else ""))
        svg = figure_to_svg(fig, prefix="hist-clv", label="Distribution of clv")
    return Chart(
        "chart-clv",
        f"Customer lifetime value over {fmt.count(horizon_days)} days",
        svg,
        _clv_caption(values.size, finite, layout, median, int(counts.max()) if spike else None),
    )


def _clv_caption(total: int, finite: FloatArray, layout: Layout, median: float, spike: int | None) -> str:
    """What the CLV histogram shows and leaves out, in words."""
    parts: list[str] = []
    if spike is not None:
        parts.append(
            f"One bar holds {fmt.count(spike)} customers ({fmt.percent(spike / finite.size)}), so the "
            "customer axis is logarithmic too."
        )
    if layout.log:
        parts.append(
            "Long tail, so the x axis is logarithmic (linear between -1 and 1); bars are equally wide "
            "on that scale."
        )
    if layout.clipped_at is not None:
        parts.append(
            f"The x axis is clipped at the 99th percentile ({fmt.bound(layout.clipped_at)}); "
            f"{fmt.count(layout.above)} customers above it are not shown."
        )
    parts.append(
        f"Dashed line: the median ({fmt.number(median, 2)}); mean {fmt.number(float(finite.mean()), 2)}, "
        f"total {fmt.number(float(finite.sum()), 2)}."
    )
    missing = total - finite.size
    if missing:
        parts.append(
            f"{fmt.count(missing)} customers ({fmt.percent(missing / total)}) have no clv (no spend "
            "model or no usable amounts) and are not shown."
        )
    return " ".join(parts)

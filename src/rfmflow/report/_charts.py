"""The report's charts, drawn server-side with matplotlib and returned as inline SVG.

Every function takes already aggregated data or numpy arrays: nothing loops over customers.
matplotlib is imported inside the functions, so importing this module builds nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rfmflow.core.results import ScoreBand, SegmentSummary
from rfmflow.report import _format as fmt
from rfmflow.report._data import FloatArray, IntArray, Metric
from rfmflow.report._svg import chart_context, figure_to_svg, new_figure, plain

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Normalize

CUSTOMERS_COLOR = "#3b6ea5"
REVENUE_COLOR = "#d08c2d"
BOUNDARY_COLOR = "#c0392b"
PREFIX = {"recency": "R", "frequency": "F", "monetary": "M"}
MAX_INTEGER_BINS = 80  # whole numbers with a range up to this get one bar per value
SKEWED_INTEGER_RANGE = 40  # a skewed metric of whole numbers up to this range: bars, clipped at p99
CONTINUOUS_BINS = 60
LINTHRESH = 1.0  # the symmetric-log axis is linear in -1..1, logarithmic outside
LINSCALE = 0.5
MIN_LABEL_GAP_PX = 11.0  # boundary labels closer than this are left out (the table has them all)
LABEL_BOX = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75}
MIN_REGION_PX = 16.0  # score ranges narrower than this get no label


@dataclass(frozen=True)
class Chart:
    """One chart of the report: an anchor id, a title, the ``<svg>`` markup and a caption."""

    id: str
    title: str
    svg: str
    caption: str = ""


# --- segment sizes -------------------------------------------------------------------------------


def segment_chart(summaries: Sequence[SegmentSummary], *, revenue_label: str = "revenue") -> Chart | None:
    """Horizontal bars per segment: share of customers next to share of ``revenue_label``."""
    if not summaries:
        return None
    customers = np.array([s.share * 100 for s in summaries], dtype=np.float64)
    revenue = np.array([s.revenue_share * 100 for s in summaries], dtype=np.float64)
    revenue = np.nan_to_num(revenue, nan=0.0, posinf=0.0, neginf=0.0)
    positions = np.arange(len(summaries), dtype=np.float64)
    height = 0.38
    with chart_context():
        from matplotlib.ticker import PercentFormatter

        fig = new_figure(7.5, 0.55 * len(summaries) + 1.4)
        ax = fig.add_subplot()
        ax.barh(positions - height / 2, customers, height=height, color=CUSTOMERS_COLOR, label="customers")
        ax.barh(positions + height / 2, revenue, height=height, color=REVENUE_COLOR, label=revenue_label)
        for pos, summary, cust, rev in zip(positions, summaries, customers, revenue, strict=True):
            bar_label(
                ax, cust, pos - height / 2, f"{fmt.count(summary.customers)} ({fmt.percent(summary.share)})"
            )
            bar_label(ax, rev, pos + height / 2, fmt.percent(summary.revenue_share))
        ax.set_yticks(positions, [plain(s.segment) for s in summaries])
        ax.invert_yaxis()
        top = max(float(customers.max()), float(revenue.max()), 1.0)
        ax.set_xlim(min(0.0, float(revenue.min()) * 1.2), top * 1.4)
        ax.axvline(0, color="#555555", linewidth=0.8)
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=0))
        ax.set_xlabel(f"share of all customers / of total {revenue_label}")
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False)
        svg = figure_to_svg(fig, prefix="segments", label=f"Customers and {revenue_label} share per segment")
    return Chart(
        "chart-segments",
        "Segment sizes",
        svg,
        f"Bars: share of customers (count in label) and share of total {revenue_label} per segment.",
    )


def bar_label(ax: Axes, value: float, position: float, text: str, *, fontsize: float = 7.5) -> None:
    """Write ``text`` just past the end of a horizontal bar."""
    offset = 3 if value >= 0 else -3
    ax.annotate(
        plain(text),
        xy=(value, position),
        xytext=(offset, 0),
        textcoords="offset points",
        va="center",
        ha="left" if value >= 0 else "right",
        fontsize=fontsize,
        color="#333333",
    )


# --- R x F heat maps -----------------------------------------------------------------------------


def rf_grid(
    r_scores: IntArray, f_scores: IntArray, r_bins: int, f_bins: int, weights: FloatArray | None = None
) -> FloatArray:
    """Customers (or the sum of ``weights``) per (r_score, f_score) cell; row ``i`` is ``r_score i+1``."""
    valid = (r_scores >= 1) & (r_scores <= r_bins) & (f_scores >= 1) & (f_scores <= f_bins)
    index = (r_scores[valid] - 1) * f_bins + (f_scores[valid] - 1)
    w = None if weights is None else np.nan_to_num(weights[valid], nan=0.0)
    sums = np.bincount(index, weights=w, minlength=r_bins * f_bins)
    return np.asarray(sums, dtype=np.float64).reshape(r_bins, f_bins)


def count_heatmap(counts: FloatArray) -> Chart:
    """R x F heat map coloured by customers, each cell showing its count (and share when it fits)."""
    total = float(counts.sum())

    def text(value: float) -> str:
        label = fmt.compact(value)
        if max(counts.shape) <= 6 and total > 0:
            label += f"\n{fmt.percent(value / total)}"
        return label

    svg = _heatmap(
        counts,
        counts,
        cmap="Blues",
        text=text,
        bar_label="customers",
        prefix="heat-count",
        label="Customers per r_score and f_score",
    )
    return Chart(
        "chart-heat-customers",
        "R \u00d7 F: customers",
        svg,
        "Rows are r_score (recency), columns f_score (frequency); each cell is the number of "
        "customers with that pair of scores.",
    )


def revenue_heatmap(revenue: FloatArray, counts: FloatArray, *, revenue_label: str) -> Chart:
    """R x F heat map coloured by the sum of monetary per cell."""

    def text(value: float) -> str:
        return fmt.compact(value)

    svg = _heatmap(
        revenue,
        counts,
        cmap="Greens",
        text=text,
        bar_label=revenue_label,
        prefix="heat-revenue",
        label=f"Total {revenue_label} per r_score and f_score",
    )
    return Chart(
        "chart-heat-revenue",
        f"R \u00d7 F: {revenue_label}",
        svg,
        f"Same grid, coloured by total {revenue_label} (sum of monetary) of the customers in each "
        "cell; empty cells have no customers.",
    )


def _heatmap(
    values: FloatArray,
    counts: FloatArray,
    *,
    cmap: str,
    text: Callable[[float], str],
    bar_label: str,
    prefix: str,
    label: str,
) -> str:
    """Draw a grid of ``values`` (rows r_score, columns f_score) with text in non-empty cells."""
    r_bins, f_bins = values.shape
    with chart_context():
        from matplotlib.ticker import FuncFormatter

        fig = new_figure(5.8, 4.8)
        ax = fig.add_subplot()
        norm, colormap = _norm(values, cmap)
        x_edges = np.arange(f_bins + 1) + 0.5
        y_edges = np.arange(r_bins + 1) + 0.5
        mesh = ax.pcolormesh(
            x_edges, y_edges, values, cmap=colormap, norm=norm, edgecolors="white", linewidth=0.8
        )
        size = _cell_font_size(max(r_bins, f_bins))
        for (row, col), value in np.ndenumerate(values):
            if counts[row, col] == 0 and value == 0:
                continue
            shade = float(norm(value))
            dark = shade > 0.6 if norm.vmin is not None and norm.vmin >= 0 else abs(shade - 0.5) > 0.3
            ax.text(
                col + 1,
                row + 1,
                plain(text(float(value))),
                ha="center",
                va="center",
                fontsize=size,
                color="white" if dark else "#1a1a1a",
            )
        ax.set_xticks(range(1, f_bins + 1), [f"F{i}" for i in range(1, f_bins + 1)])
        ax.set_yticks(range(1, r_bins + 1), [f"R{i}" for i in range(1, r_bins + 1)])
        ax.set_xlabel("f_score (frequency, higher is more)")
        ax.set_ylabel("r_score (recency, higher is more recent)")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        bar = fig.colorbar(
            mesh, ax=ax, shrink=0.85, format=FuncFormatter(lambda v, _pos: plain(fmt.compact(v)))
        )
        bar.set_label(plain(bar_label))
        bar.outline.set_visible(False)
        return figure_to_svg(fig, prefix=prefix, label=label)


def _norm(values: FloatArray, cmap: str) -> tuple[Normalize, Any]:
    """Colour scale: sequential from 0, or diverging around 0 when some cells are negative."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    if low < 0:
        limit = max(abs(low), abs(high))
        return Normalize(vmin=-limit, vmax=limit), colormaps["RdBu"]
    return Normalize(vmin=0.0, vmax=high if high > 0 else 1.0), colormaps[cmap]


def _cell_font_size(bins: int) -> float:
    """Smaller cell text for bigger grids."""
    if bins <= 5:
        return 8.5
    if bins <= 7:
        return 7.0
    if bins <= 10:
        return 6.0
    return 4.5


# --- distributions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How a histogram shows its values: bin edges, log or linear x, values left out."""

    edges: FloatArray
    log: bool = False
    above: int = 0  # values right of the last edge (not shown)
    clipped_at: float | None = None  # the 99th percentile the axis stops at

    @property
    def low(self) -> float:
        return float(self.edges[0])

    @property
    def high(self) -> float:
        return float(self.edges[-1])


def histogram_chart(
    metric: Metric,
    bands: Sequence[ScoreBand],
    *,
    title: str,
    xlabel: str,
    skewed: bool,
) -> Chart | None:
    """Histogram of ``metric`` with a labelled dashed line at each score boundary.

    A ``skewed`` metric (frequency, monetary) gets a logarithmic x axis, or, when its values are
    whole numbers in a short range, one bar per value up to the 99th percentile; the caption says
    which and what is left out.
    """
    finite = metric.values[np.isfinite(metric.values)]
    if finite.size == 0:
        return None
    layout = _layout(finite, skewed)
    counts, _ = np.histogram(finite, bins=layout.edges)
    with chart_context():
        from matplotlib.ticker import FuncFormatter

        fig = new_figure(6.4, 3.6)
        ax = fig.add_subplot()
        if layout.log:
            ax.set_xscale("symlog", linthresh=LINTHRESH, linscale=LINSCALE)
        ax.stairs(counts, layout.edges, fill=True, color=CUSTOMERS_COLOR, alpha=0.85)
        ax.set_xlim(layout.low, layout.high)
        ax.set_ylim(0, max(float(counts.max()), 1.0) * 1.08)
        compact = FuncFormatter(lambda v, _pos: plain(fmt.compact(v)))
        ax.xaxis.set_major_formatter(compact)
        ax.yaxis.set_major_formatter(compact)
        hidden = _draw_boundaries(ax, bands, PREFIX[metric.key], layout.low, layout.high)
        ax.set_xlabel(plain(xlabel + (" (log scale)" if layout.log else "")))
        ax.set_ylabel("customers")
        svg = figure_to_svg(fig, prefix=f"hist-{metric.key}", label=f"Distribution of {metric.column}")
    return Chart(f"chart-{metric.key}", title, svg, _histogram_caption(metric, layout, hidden))


def _layout(values: FloatArray, skewed: bool) -> Layout:
    """Choose bins: everything on a linear axis unless ``skewed`` (then clipped bars or log x)."""
    low, high = float(values.min()), float(values.max())
    integers = bool(np.all(np.floor(values) == values))
    if not skewed or (high - low <= SKEWED_INTEGER_RANGE and integers):
        return Layout(_linear_edges(low, high, integers))
    top = float(np.percentile(values, 99))
    if integers and 0 < top - low <= SKEWED_INTEGER_RANGE:
        above = int(np.count_nonzero(values > top))
        return Layout(_linear_edges(low, top, integers), above=above, clipped_at=top if above else None)
    return Layout(_log_edges(low, high), log=True)


def _linear_edges(low: float, high: float, integers: bool) -> FloatArray:
    """One bar per value for whole numbers in a short range, else equal-width bins."""
    if high <= low:
        return np.array([low - 0.5, low + 0.5], dtype=np.float64)
    if integers and high - low <= MAX_INTEGER_BINS:
        return np.arange(math.floor(low) - 0.5, math.floor(high) + 1.0, 1.0, dtype=np.float64)
    return np.linspace(low, high, CONTINUOUS_BINS + 1, dtype=np.float64)


def _log_edges(low: float, high: float) -> FloatArray:
    """Bins of equal width on the symmetric-log axis (so zero and refunds still have a place)."""
    from matplotlib.scale import SymmetricalLogTransform

    transform = SymmetricalLogTransform(10, LINTHRESH, LINSCALE)
    ends = np.asarray(
        transform.transform_non_affine(np.array([low, high], dtype=np.float64)), dtype=np.float64
    )
    if not ends[1] > ends[0]:
        return _linear_edges(low, high, False)
    steps = np.linspace(float(ends[0]), float(ends[1]), CONTINUOUS_BINS + 1)
    edges = np.asarray(transform.inverted().transform_non_affine(steps), dtype=np.float64)
    edges[0], edges[-1] = low, high  # no value may fall out through rounding
    return edges


def ordered_bands(bands: Sequence[ScoreBand]) -> list[ScoreBand]:
    """The bands somebody got (with a known low or high), in value order."""
    known = [b for b in bands if b.low is not None or b.high is not None]
    known.sort(key=_band_order)
    return known


def _band_order(band: ScoreBand) -> tuple[float, float]:
    low = band.low if band.low is not None else -math.inf
    return (low, band.high if band.high is not None else math.inf)


def boundaries(ordered: Sequence[ScoreBand]) -> list[float | None]:
    """Where each band of ``ordered`` ends and the next begins (one fewer than the bands).

    The line goes between a band's ``high`` and the next band's ``low`` (exactly at ``high`` when
    they touch), so it falls between histogram bars; ``None`` when neither bound is known.
    """
    out: list[float | None] = []
    for below, above in itertools.pairwise(ordered):
        if below.high is None:
            out.append(None if above.low is None else float(above.low))
        elif above.low is not None and above.low > below.high:
            out.append((float(below.high) + float(above.low)) / 2)
        else:
            out.append(float(below.high))
    return out


def _draw_boundaries(ax: Axes, bands: Sequence[ScoreBand], prefix: str, low: float, high: float) -> int:
    """Dashed lines at the score boundaries, labelled with the value, and each score's range labelled
    above the plot (labels that would overlap are left out). Returns the boundaries not shown."""
    ordered = ordered_bands(bands)
    cuts = boundaries(ordered)
    hidden = 0
    last_label = -math.inf
    for x, below in zip(cuts, ordered, strict=False):
        if x is None:
            continue
        if not low <= x <= high:
            hidden += 1
            continue
        ax.axvline(x, color=BOUNDARY_COLOR, linestyle="--", linewidth=1.0)
        position = _pixels(ax, x)
        if position - last_label < MIN_LABEL_GAP_PX:
            continue
        last_label = position
        text = f"\u2264 {fmt.bound(below.high)} " if below.high is not None else f"< {fmt.bound(x)} "
        ax.text(
            x,
            0.97,
            plain(text),
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="right",
            va="top",
            fontsize=7,
            color=BOUNDARY_COLOR,
            bbox=LABEL_BOX,
        )
    edges: list[float | None] = [low, *cuts, high]
    for band, left, right in zip(ordered, edges, edges[1:], strict=False):
        if left is None or right is None:
            continue
        left, right = max(left, low), min(right, high)
        if right <= left or _pixels(ax, right) - _pixels(ax, left) < MIN_REGION_PX:
            continue
        middle = _middle(ax, left, right)
        ax.text(
            middle,
            1.01,
            f"{prefix}{band.score}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold",
            color="#444444",
        )
    return hidden


def _pixels(ax: Axes, x: float) -> float:
    """Horizontal display position of data value ``x`` (honours a log axis)."""
    return float(ax.transData.transform((x, 0.0))[0])


def _middle(ax: Axes, left: float, right: float) -> float:
    """The data value half-way between ``left`` and ``right`` as drawn (on a log axis too)."""
    middle_px = (_pixels(ax, left) + _pixels(ax, right)) / 2
    return float(ax.transData.inverted().transform((middle_px, 0.0))[0])


def _histogram_caption(metric: Metric, layout: Layout, hidden: int) -> str:
    """What the histogram shows and leaves out, in words."""
    total = metric.values.size
    parts: list[str] = []
    if metric.half_life_days is not None:
        parts.append(
            f"Scored on the time-decayed value ({metric.column}, half-life "
            f"{fmt.bound(metric.half_life_days)} days)."
        )
    if layout.log:
        parts.append(
            "Very skewed, so the x axis is logarithmic (linear between -1 and 1, so zero and "
            "negative values still show); bars are equally wide on that scale."
        )
    if layout.clipped_at is not None:
        above = f"{fmt.count(layout.above)} customers ({fmt.percent(layout.above / total)})"
        parts.append(
            f"Skewed: the x axis is clipped at the 99th percentile ({fmt.bound(layout.clipped_at)}); "
            f"{above} above it are not shown."
        )
    if metric.missing:
        parts.append(
            f"{fmt.count(metric.missing)} customers ({fmt.percent(metric.missing / total)}) have no "
            f"{metric.column} value and are not shown."
        )
    if hidden:
        lies = "boundary lies" if hidden == 1 else "boundaries lie"
        parts.append(f"{hidden} score {lies} outside the shown range (see the thresholds table).")
    parts.append("Dashed lines: score boundaries; labels above: the score of each range.")
    return " ".join(parts)

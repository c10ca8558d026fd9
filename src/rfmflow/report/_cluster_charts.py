"""The cluster report's charts (silhouette curve, cluster sizes against revenue, centroid heat map),
drawn with matplotlib as inline SVG in the style of :mod:`._charts`.

Every function takes aggregated data (one value per k, per cluster or per cluster and feature):
nothing loops over customers. The figures are narrow (about 5 inches) so that their text stays
readable when a phone scales them down to its width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from rfmflow.report import _format as fmt
from rfmflow.report._charts import BOUNDARY_COLOR, CUSTOMERS_COLOR, REVENUE_COLOR, Chart, bar_label
from rfmflow.report._data import FloatArray
from rfmflow.report._svg import chart_context, figure_to_svg, new_figure, plain

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MAX_POINT_LABELS = 12  # silhouette curves with more points than this get no value labels
MIN_Z_LIMIT = 1.5  # the centroid colour scale spans at least -1.5..1.5 (the "very" / "top" level)
LEVEL_Z = 0.5  # standard deviations that count as "high" / "low" in the names
ROW_LABEL_BAND = 0.36  # the top of each heat map row (in rows) that holds the cluster name


def cluster_label(cluster: int, name: str) -> str:
    """``0 · Recent frequent high spenders``; the unclustered customers keep just their name."""
    return name if cluster < 0 else f"{cluster} \u00b7 {name}"


# --- silhouette curve ----------------------------------------------------------------------------


def silhouette_chart(curve: Sequence[tuple[int, float]], chosen: int) -> Chart:
    """Line chart of the mean silhouette for every k tried, the chosen k marked."""
    ks = np.array([k for k, _ in curve], dtype=np.float64)
    values = np.array([v for _, v in curve], dtype=np.float64)
    finite = values[np.isfinite(values)]
    chosen_value = next((v for k, v in curve if k == chosen), math.nan)
    with chart_context():
        from matplotlib.ticker import MaxNLocator

        fig = new_figure(4.8, 2.9)
        ax = fig.add_subplot()
        ax.axvline(chosen, color=BOUNDARY_COLOR, linestyle="--", linewidth=1.0)
        ax.plot(ks, values, color=CUSTOMERS_COLOR, linewidth=1.8, marker="o", markersize=5)
        if math.isfinite(chosen_value):
            ax.plot(
                [chosen],
                [chosen_value],
                linestyle="none",
                marker="o",
                markersize=11,
                markerfacecolor="none",
                markeredgecolor=BOUNDARY_COLOR,
                markeredgewidth=2.0,
            )
        if len(curve) <= MAX_POINT_LABELS:
            for k, value in curve:
                if math.isfinite(value):
                    _point_label(ax, k, value, bold=k == chosen)
        ax.text(
            chosen,
            1.02,
            f"chosen: k = {chosen}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8.5,
            fontweight="bold",
            color=BOUNDARY_COLOR,
        )
        low = min(0.0, float(finite.min())) if finite.size else 0.0
        high = max(float(finite.max()), 0.05) if finite.size else 1.0
        ax.set_ylim(low - 0.02 if low < 0 else 0.0, high * 1.18)
        ax.set_xlim(float(ks.min()) - 0.5, float(ks.max()) + 0.5)
        if len(curve) <= 2 * MAX_POINT_LABELS:
            ax.set_xticks([k for k, _ in curve])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if low < 0:
            ax.axhline(0, color="#555555", linewidth=0.8)
        ax.set_xlabel("k (number of clusters)")
        ax.set_ylabel("mean silhouette")
        ax.grid(axis="y", color="#e3e7ec", linewidth=0.8)
        ax.set_axisbelow(True)
        svg = figure_to_svg(fig, prefix="silhouette", label="Mean silhouette by number of clusters")
    return Chart(
        "chart-silhouette",
        "Silhouette by number of clusters",
        svg,
        "The mean silhouette of each k tried: how much closer customers are to their own cluster "
        "than to the next one (1 = perfectly separated, 0 = on the border). The highest wins; "
        "within 0.001 of the best the smaller k is taken.",
    )


def _point_label(ax: Axes, k: int, value: float, *, bold: bool) -> None:
    ax.annotate(
        f"{value:.3f}",
        xy=(k, value),
        xytext=(0, 9),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=8,
        fontweight="bold" if bold else "normal",
        color="#333333",
    )


# --- sizes and revenue ---------------------------------------------------------------------------


def size_revenue_chart(
    labels: Sequence[str],
    sizes: Sequence[int],
    shares: Sequence[float],
    revenue_shares: Sequence[float],
    *,
    revenue_label: str = "revenue",
) -> Chart | None:
    """Grouped horizontal bars per cluster: share of customers next to share of ``revenue_label``.

    Each cluster's name is written above its pair of bars rather than beside them, so long names
    leave the bars the full width of the chart.
    """
    if not labels:
        return None
    customers = np.array(shares, dtype=np.float64) * 100
    revenue = np.nan_to_num(np.array(revenue_shares, dtype=np.float64) * 100, nan=0.0, posinf=0.0, neginf=0.0)
    customers = np.nan_to_num(customers, nan=0.0, posinf=0.0, neginf=0.0)
    rows = np.arange(len(labels), dtype=np.float64)
    height = 0.26
    with chart_context():
        from matplotlib.ticker import PercentFormatter

        fig = new_figure(4.8, 0.8 * len(labels) + 1.1)
        ax = fig.add_subplot()
        ax.barh(rows, customers, height=height, color=CUSTOMERS_COLOR, label="customers")
        ax.barh(rows + height, revenue, height=height, color=REVENUE_COLOR, label=revenue_label)
        for row, label, size, share, cust, rev, rev_share in zip(
            rows, labels, sizes, shares, customers, revenue, revenue_shares, strict=True
        ):
            ax.text(
                0.0,
                row - height / 2 - 0.06,
                plain(label),
                transform=ax.get_yaxis_transform(),
                ha="left",
                va="bottom",
                fontsize=9,
                fontweight="bold",
                color="#1f2933",
            )
            bar_label(ax, float(cust), float(row), f"{fmt.count(size)} ({fmt.percent(share)})", fontsize=8.5)
            bar_label(ax, float(rev), float(row + height), fmt.percent(rev_share), fontsize=8.5)
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_ylim(float(rows[-1]) + height + 0.35, -0.75)
        top = max(float(customers.max()), float(revenue.max()), 1.0)
        ax.set_xlim(min(0.0, float(revenue.min()) * 1.25), top * 1.3)
        ax.axvline(0, color="#555555", linewidth=0.8)
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=0))
        ax.set_xlabel(f"share of all customers / of total {revenue_label}")
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False)
        svg = figure_to_svg(
            fig, prefix="cluster-sizes", label=f"Customers and {revenue_label} share per cluster"
        )
    return Chart(
        "chart-cluster-sizes",
        f"Cluster size and {revenue_label}",
        svg,
        f"Blue: share of all customers (count in the label); orange: share of total {revenue_label}. "
        f"A cluster whose orange bar is longer than its blue one brings more than its share of "
        f"{revenue_label}.",
    )


# --- centroids -----------------------------------------------------------------------------------


def centroid_heatmap(
    z: FloatArray, rows: Sequence[str], columns: Sequence[str], *, caption: str = ""
) -> Chart:
    """Clusters x features, coloured by ``z`` (standard deviations from the mean of all clustered
    customers) on a diverging scale centred at 0, each cell showing its value.

    Each cluster's name is written above its row of cells rather than beside it, so long names
    leave the cells the full width of the chart.
    """
    n_rows, n_cols = z.shape
    finite = z[np.isfinite(z)]
    limit = max(float(np.abs(finite).max()) if finite.size else 0.0, MIN_Z_LIMIT)
    with chart_context():
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        from matplotlib.patches import Rectangle
        from matplotlib.ticker import MultipleLocator

        width = min(7.0, max(3.6, 1.0 + 0.8 * n_cols))
        fig = new_figure(width, 0.62 * n_rows + 1.5)
        ax = fig.add_subplot()
        norm = Normalize(vmin=-limit, vmax=limit)
        cmap = colormaps["RdBu_r"]
        for (row, col), value in np.ndenumerate(z):
            top = row + ROW_LABEL_BAND
            known = math.isfinite(value)
            ax.add_patch(
                Rectangle(
                    (col - 0.5, top),
                    1.0,
                    1.0 - ROW_LABEL_BAND,
                    facecolor=cmap(norm(value)) if known else "#eeeeee",
                    edgecolor="white",
                    linewidth=1.0,
                )
            )
            ax.text(
                col,
                top + (1.0 - ROW_LABEL_BAND) / 2,
                f"{value:+.2f}".replace("-", "\u2212") if known else fmt.DASH,
                ha="center",
                va="center",
                fontsize=9,
                fontweight="bold" if known and abs(value) >= LEVEL_Z else "normal",
                color="white" if known and abs(value) / limit > 0.55 else "#1a1a1a",
            )
        for row, label in enumerate(rows):
            ax.text(
                -0.5,
                row + ROW_LABEL_BAND - 0.03,
                plain(label),
                ha="left",
                va="bottom",
                fontsize=8.5,
                fontweight="bold",
                color="#1f2933",
            )
        ax.set_xlim(-0.5, n_cols - 0.5)
        ax.set_ylim(n_rows + 0.02, -0.02)
        ax.set_xticks(range(n_cols), [plain(c) for c in columns])
        ax.xaxis.tick_top()
        ax.set_yticks([])
        ax.tick_params(length=0, labelsize=8.5)
        for spine in ax.spines.values():
            spine.set_visible(False)
        mappable = ScalarMappable(norm=norm, cmap=cmap)
        bar = fig.colorbar(mappable, ax=ax, orientation="horizontal", shrink=0.85, aspect=28, pad=0.03)
        bar.set_label("standard deviations from the mean")
        bar.ax.xaxis.set_major_locator(MultipleLocator(0.5 if limit <= 2.5 else 1.0))
        bar.ax.xaxis.set_major_formatter(_signed)
        bar.outline.set_visible(False)
        svg = figure_to_svg(
            fig, prefix="centroids", label="Cluster centres in standard deviations per feature"
        )
    return Chart("chart-centroids", "Cluster centres", svg, caption)


def _signed(value: float, _pos: float) -> str:
    """Colour bar ticks: ``\u22121``, ``0``, ``+0.5``."""
    if value == 0:
        return "0"
    text = f"{value:+g}"
    return text.replace("-", "\u2212")

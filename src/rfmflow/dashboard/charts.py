"""Hand-built inline SVG charts: share bars, churn-risk bars, the R×F heat map, a stacked area trend and the
transition matrix.

Every function takes aggregated numbers and returns markup (escaped with ``markupsafe``):
each mark has a ``<title>`` tooltip, and marks that stand for customers are ``<a>`` links to
the customers behind them. Charts scale with the page (a ``viewBox``, no fixed width); colours
are SVG attributes (the pages' content security policy forbids inline styles).
(:mod:`rfmflow.report._svg` turns matplotlib figures into SVG for the static reports; the
dashboard draws without matplotlib, so nothing there applies.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

CUSTOMERS_COLOR = "#3b6ea5"  # the report's colours (rfmflow.report._charts)
REVENUE_COLOR = "#d08c2d"
TRACK_COLOR = "#eef1f5"
PALETTE = (
    "#3b6ea5",
    "#d08c2d",
    "#4e9a58",
    "#b5475b",
    "#7d5ba6",
    "#2a9d8f",
    "#c9a227",
    "#8c564b",
    "#d36ba6",
    "#6b7b8c",
    "#17a2b8",
    "#9c6b30",
)
LOW_RGB = (247, 251, 255)
HIGH_RGB = (8, 69, 148)
MOVE_RGB = (200, 90, 30)


def _e(value: object) -> str:
    return str(escape(str(value)))


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def segment_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _mix(low: tuple[int, int, int], high: tuple[int, int, int], t: float) -> str:
    t = min(max(t, 0.0), 1.0)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def share_bar(customers_share: float, revenue_share: float, *, label: str, href: str | None) -> Markup:
    """Two thin bars (share of customers above, share of revenue below) for one table row."""
    c, r = max(customers_share, 0.0) * 100, max(revenue_share, 0.0) * 100
    tip = f"{label}: {customers_share * 100:.1f}% of customers, {revenue_share * 100:.1f}% of revenue"
    body = (
        f"<title>{_e(tip)}</title>"
        f'<rect x="0" y="0" width="100" height="14" fill="{TRACK_COLOR}"/>'
        f'<rect x="0" y="1" width="{_num(c)}" height="5.5" fill="{CUSTOMERS_COLOR}"/>'
        f'<rect x="0" y="7.5" width="{_num(r)}" height="5.5" fill="{REVENUE_COLOR}"/>'
    )
    if href:
        body = f'<a href="{_e(href)}">{body}</a>'
    return Markup(
        f'<svg class="sharebar" viewBox="0 0 100 14" preserveAspectRatio="none" role="img" '
        f'aria-label="{_e(tip)}">{body}</svg>'
    )


RISK_COLORS = {"high": "#b5475b", "medium": "#d08c2d", "low": "#4e9a58"}


def risk_bar(counts: Mapping[str, int], *, label: str, href: Callable[[str], str]) -> Markup:
    """One row's customers split by predicted churn risk (high, medium, low), each part a link
    to those customers."""
    total = sum(counts.get(k, 0) for k in RISK_COLORS) or 1
    x, parts = 0.0, []
    for level, color in RISK_COLORS.items():
        n = counts.get(level, 0)
        if not n:
            continue
        w = n / total * 100
        tip = f"{label}: {n:,} at {level} churn risk ({n / total * 100:.0f}%)"
        parts.append(
            f'<a href="{_e(href(level))}"><title>{_e(tip)}</title>'
            f'<rect x="{_num(x)}" y="0" width="{_num(w)}" height="14" fill="{color}"/></a>'
        )
        x += w
    tip = f"{label}: churn risk " + ", ".join(f"{counts.get(k, 0):,} {k}" for k in RISK_COLORS)
    return Markup(
        f'<svg class="sharebar" viewBox="0 0 100 14" preserveAspectRatio="none" role="img" '
        f'aria-label="{_e(tip)}"><rect x="0" y="0" width="100" height="14" fill="{TRACK_COLOR}"/>'
        f"{''.join(parts)}</svg>"
    )


@dataclass(frozen=True)
class Cell:
    """One square of the R×F grid."""

    r: int
    f: int
    customers: int
    revenue: str
    """Formatted revenue (for labels and tooltips)."""
    value: float
    """What the colour stands for (customers or revenue)."""
    label: str
    segments: Sequence[tuple[str, int]]


def heat_map(
    cells: Sequence[Cell], *, r_bins: int, f_bins: int, measure: str, href: Callable[[int, int], str]
) -> Markup:
    """The R×F grid: rows R (best on top), columns F; colour by ``value``; each cell links."""
    cw, ch, left, top, bottom = 64, 46, 58, 8, 46
    width, height = left + cw * f_bins + 8, top + ch * r_bins + bottom
    peak = max((c.value for c in cells), default=0.0) or 1.0
    by_pos = {(c.r, c.f): c for c in cells}
    parts = []
    for r in range(r_bins, 0, -1):
        y = top + (r_bins - r) * ch
        parts.append(f'<text x="{left - 8}" y="{y + ch / 2 + 4}" text-anchor="end" class="axis">R {r}</text>')
        for f in range(1, f_bins + 1):
            x = left + (f - 1) * cw
            cell = by_pos.get((r, f))
            if cell is None or cell.customers == 0:
                parts.append(
                    f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" fill="#f4f4f4">'
                    f"<title>R {r} F {f}: no customers</title></rect>"
                )
                continue
            t = cell.value / peak if peak > 0 else 0.0
            fill = _mix(LOW_RGB, HIGH_RGB, 0.08 + 0.92 * t)
            ink = "#ffffff" if t > 0.5 else "#1a1a1a"
            segs = "; ".join(f"{name} {n:,}" for name, n in cell.segments)
            tip = f"R {r} F {f}: {cell.customers:,} customers, revenue {cell.revenue} ({segs})"
            parts.append(
                f'<a href="{_e(href(r, f))}" class="cell" data-r="{r}" data-f="{f}" '
                f'data-customers="{cell.customers}"><title>{_e(tip)}</title>'
                f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" fill="{fill}"/>'
                f'<text x="{x + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle" fill="{ink}" '
                f'class="cell-label">{_e(cell.label)}</text></a>'
            )
    base = top + r_bins * ch
    for f in range(1, f_bins + 1):
        parts.append(
            f'<text x="{left + (f - 0.5) * cw}" y="{base + 16}" text-anchor="middle" class="axis">'
            f"F {f}</text>"
        )
    parts.append(
        f'<text x="{left + f_bins * cw / 2}" y="{base + 36}" text-anchor="middle" class="axis-title">'
        f"frequency score → (colour: {_e(measure)})</text>"
    )
    return Markup(
        f'<svg class="chart heatmap" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="R by F grid coloured by {_e(measure)}">{"".join(parts)}</svg>'
    )


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    values: Sequence[int]


def _ticks(peak: int) -> list[int]:
    if peak <= 0:
        return [0]
    step = 10 ** max(len(str(peak)) - 1, 0)
    for factor in (1, 2, 5, 10):
        if peak / (step * factor) <= 5:
            step *= factor
            break
    return list(range(0, peak + step, step))


def stacked_area(days: Sequence[date], series: Sequence[Series], *, label: str) -> Markup:
    """Customers per segment over time, stacked (one point per day with a run)."""
    width, height, left, right, top, bottom = 720, 260, 58, 14, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(days)
    totals = [sum(s.values[i] for s in series) for i in range(n)]
    ticks = _ticks(max(totals, default=0))
    peak = ticks[-1] or 1
    first, last = (days[0].toordinal(), days[-1].toordinal()) if n else (0, 1)
    span = max(last - first, 1)

    def x(i: int) -> float:
        return left + plot_w / 2 if n == 1 else left + (days[i].toordinal() - first) / span * plot_w

    def y(v: float) -> float:
        return top + plot_h - v / peak * plot_h

    parts = []
    for t in ticks:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{_num(y(t))}" y2="{_num(y(t))}" class="grid"/>'
            f'<text x="{left - 6}" y="{_num(y(t) + 4)}" text-anchor="end" class="axis">{t:,}</text>'
        )
    below = [0] * n
    for s in series:
        above = [below[i] + s.values[i] for i in range(n)]
        tip = f"{s.name}: {s.values[-1]:,} customers on {days[-1].isoformat()}" if n else s.name
        if n == 1:
            bar_w = 40
            shape = (
                f'<rect x="{_num(x(0) - bar_w / 2)}" y="{_num(y(above[0]))}" width="{bar_w}" '
                f'height="{_num(y(below[0]) - y(above[0]))}" fill="{s.color}"/>'
            )
        else:
            upper = " ".join(f"{_num(x(i))},{_num(y(above[i]))}" for i in range(n))
            lower = " ".join(f"{_num(x(i))},{_num(y(below[i]))}" for i in reversed(range(n)))
            shape = f'<polygon points="{upper} {lower}" fill="{s.color}" fill-opacity="0.9"/>'
        parts.append(f'<g class="area"><title>{_e(tip)}</title>{shape}</g>')
        below = above
    if n:
        marks = sorted({0, n // 2, n - 1})
        for i in marks:
            anchor = "start" if i == 0 and n > 1 else ("end" if i == n - 1 and n > 1 else "middle")
            parts.append(
                f'<text x="{_num(x(i))}" y="{height - 10}" text-anchor="{anchor}" class="axis">'
                f"{days[i].isoformat()}</text>"
            )
    return Markup(
        f'<svg class="chart trend" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">'
        f"{''.join(parts)}</svg>"
    )


def transition_matrix(
    matrix: Mapping[str, Mapping[str, int]],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    href: Callable[[str, str], str],
) -> Markup:
    """Segment on the first day (rows) against the segment on the last (columns); each
    non-empty cell links to the customers who made that move (or stayed)."""
    cw, ch, left, top = 46, 28, 150, 120
    width, height = left + cw * len(columns) + 100, top + ch * len(rows) + 10
    moved = [n for src in rows for dst in columns if src != dst for n in [matrix.get(src, {}).get(dst, 0)]]
    stayed = [matrix.get(s, {}).get(s, 0) for s in rows if s in columns]
    peak_moved, peak_stayed = max(moved, default=0) or 1, max(stayed, default=0) or 1
    parts = []
    for j, dst in enumerate(columns):
        x = left + j * cw + cw / 2
        parts.append(
            f'<text transform="translate({_num(x + 4)},{top - 6}) rotate(-50)" class="axis">{_e(dst)}</text>'
        )
    for i, src in enumerate(rows):
        y = top + i * ch
        parts.append(
            f'<text x="{left - 6}" y="{y + ch / 2 + 4}" text-anchor="end" class="axis">{_e(src)}</text>'
        )
        for j, dst in enumerate(columns):
            x = left + j * cw
            n = matrix.get(src, {}).get(dst, 0)
            if n == 0:
                parts.append(
                    f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" fill="#f7f7f7"/>'
                )
                continue
            if src == dst:
                fill = _mix(LOW_RGB, HIGH_RGB, 0.1 + 0.5 * n / peak_stayed)
                tip = f"{n:,} customers stayed in {src}"
            else:
                fill = _mix((255, 245, 235), MOVE_RGB, 0.1 + 0.9 * n / peak_moved)
                tip = f"{n:,} customers moved from {src} to {dst}"
            ink = "#ffffff" if (src != dst and n / peak_moved > 0.55) else "#1a1a1a"
            parts.append(
                f'<a href="{_e(href(src, dst))}" class="move" data-from="{_e(src)}" data-to="{_e(dst)}" '
                f'data-customers="{n}"><title>{_e(tip)}</title>'
                f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" fill="{fill}"/>'
                f'<text x="{x + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle" fill="{ink}" '
                f'class="cell-label small">{_short(n)}</text></a>'
            )
    return Markup(
        f'<svg class="chart matrix" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="segment moves between two days">{"".join(parts)}</svg>'
    )


def _short(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def short_count(n: int) -> str:
    """``12345`` → ``12k``: a count that fits in a chart cell."""
    return _short(n)

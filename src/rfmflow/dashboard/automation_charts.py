"""Hand-built SVG for the automation pages: grouped horizontal bars (one group per segment or
step, one bar per measure), each bar with a ``<title>`` tooltip and its number at its end.

Like :mod:`rfmflow.dashboard.charts`: a ``viewBox`` that scales with the page, colours as SVG
attributes (no inline styles under the pages' content security policy), escaped text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

from rfmflow.dashboard.charts import PALETTE, TRACK_COLOR

LABEL_WIDTH = 110
BAR_WIDTH = 250
VALUE_WIDTH = 50
BAR_HEIGHT = 12
GAP = 2
GROUP_GAP = 10


def _e(value: object) -> str:
    return str(escape(str(value)))


def grouped_bars(
    groups: Sequence[tuple[str, Mapping[str, int]]],
    measures: Sequence[tuple[str, str]],
    *,
    label: str,
) -> Markup:
    """``groups``: (name, {measure: count}); ``measures``: (key, label) in drawing order. Bars
    share one scale (the largest count), so a group's bars compare with every other group's."""
    peak = max([int(v.get(key, 0)) for _n, v in groups for key, _l in measures] + [1])
    per_group = len(measures) * (BAR_HEIGHT + GAP) + GROUP_GAP
    height = max(len(groups), 1) * per_group + 28
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    parts: list[str] = []
    y = 4.0
    for name, values in groups:
        short = name if len(name) <= 16 else name[:15] + "…"
        middle = y + len(measures) * (BAR_HEIGHT + GAP) / 2 + 4
        parts.append(
            f'<text class="axis" x="{LABEL_WIDTH - 6}" y="{middle:.1f}" text-anchor="end">{_e(short)}</text>'
        )
        for i, (key, measure) in enumerate(measures):
            count = int(values.get(key, 0))
            length = BAR_WIDTH * count / peak
            color = PALETTE[i % len(PALETTE)]
            tip = f"{name}: {count:,} {measure}"
            parts.append(
                f'<g data-group="{_e(name)}" data-measure="{_e(key)}" data-value="{count}">'
                f"<title>{_e(tip)}</title>"
                f'<rect x="{LABEL_WIDTH}" y="{y:.1f}" width="{BAR_WIDTH}" height="{BAR_HEIGHT}" '
                f'fill="{TRACK_COLOR}"/>'
                f'<rect x="{LABEL_WIDTH}" y="{y:.1f}" width="{length:.1f}" height="{BAR_HEIGHT}" '
                f'fill="{color}"/>'
                f'<text class="axis" x="{LABEL_WIDTH + BAR_WIDTH + 4}" y="{y + BAR_HEIGHT - 2:.1f}">'
                f"{count:,}</text></g>"
            )
            y += BAR_HEIGHT + GAP
        y += GROUP_GAP
    x = LABEL_WIDTH
    for i, (_key, measure) in enumerate(measures):
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="{y + 4:.1f}" width="10" height="10" fill="{color}"/>'
            f'<text class="axis" x="{x + 14}" y="{y + 13:.1f}">{_e(measure)}</text>'
        )
        x += 14 + 7 * len(measure) + 12
    return Markup(
        f'<svg class="chart bars" viewBox="0 0 {width} {height:.0f}" role="img" aria-label="{_e(label)}">'
        f"<title>{_e(label)}</title>{''.join(parts)}</svg>"
    )


__all__ = ["grouped_bars"]

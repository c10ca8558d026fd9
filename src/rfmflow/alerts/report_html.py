"""The weekly report as one self-contained HTML page: inline CSS, inline SVG, no external resource.

The page can be mailed, saved and opened anywhere: nothing is fetched (no scripts, no
stylesheets, fonts or images by URL); the only URLs are plain links back to the dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import escape

NOW_COLOR = "#3b6ea5"
BEFORE_COLOR = "#b8c7da"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2733;margin:0}
body{background:#f6f7f9}
main{max-width:860px;margin:0 auto;padding:24px 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e3e7ec;padding-bottom:4px}
.muted{color:#5b6775}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.kpi{flex:1 1 150px;border:1px solid #e3e7ec;border-radius:6px;padding:8px 12px}
.kpi b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid #eef1f5;text-align:right}
th:first-child,td:first-child{text-align:left}
#alerts th,#alerts td{text-align:left}
.up{color:#2f7d3b}
.down{color:#b5475b}
svg{max-width:100%;height:auto}
"""


def _e(value: object) -> str:
    return str(escape("–" if value is None else str(value)))


def _n(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _signed(value: int | None, pct: float | None = None) -> str:
    if value is None:
        return "–"
    cls = "up" if value > 0 else "down" if value < 0 else ""
    text = f"{value:+,}" + (f" ({pct:+.1f}%)" if pct is not None else "")
    return f'<span class="{cls}">{_e(text)}</span>'


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def size_chart(segments: Sequence[dict[str, Any]]) -> str:
    """Horizontal bars per segment: a week ago (light) and now (dark)."""
    if not segments:
        return ""
    label_w, bar_w, row_h = 150, 420, 30
    top = max(max(s["customers_now"], s["customers_before"]) for s in segments) or 1
    height = row_h * len(segments) + 30
    parts = [
        f'<svg viewBox="0 0 {label_w + bar_w + 90} {height}" '
        f'width="{label_w + bar_w + 90}" height="{height}" role="img" '
        f'aria-label="Customers per segment, a week ago and now" font-family="sans-serif" font-size="12">'
    ]
    for i, s in enumerate(segments):
        y = i * row_h + 4
        before_w = bar_w * s["customers_before"] / top
        now_w = bar_w * s["customers_now"] / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{_e(s["segment"])}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{before_w:.1f}" height="10" fill="{BEFORE_COLOR}">'
            f"<title>{_e(s['segment'])} a week ago: {_n(s['customers_before'])}</title></rect>"
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 12}" width="{now_w:.1f}" height="10" fill="{NOW_COLOR}">'
            f"<title>{_e(s['segment'])} now: {_n(s['customers_now'])}</title></rect>"
        )
        parts.append(
            f'<text x="{label_w + max(before_w, now_w) + 6:.1f}" y="{y + 20}">{_n(s["customers_now"])}</text>'
        )
    legend_y = height - 8
    parts.append(
        f'<rect x="{label_w}" y="{legend_y - 9}" width="10" height="10" fill="{BEFORE_COLOR}"/>'
        f'<text x="{label_w + 14}" y="{legend_y}">a week ago</text>'
        f'<rect x="{label_w + 100}" y="{legend_y - 9}" width="10" height="10" fill="{NOW_COLOR}"/>'
        f'<text x="{label_w + 114}" y="{legend_y}">now</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def render_report(summary: dict[str, Any], *, title: str = "Weekly report", dashboard_url: str = "") -> str:
    """The whole page for a :func:`~rfmflow.alerts.report_data.weekly_summary`."""
    currency = summary["currency"]
    change = summary["customers_now"] - summary["customers_before"]
    kpis = [
        ("Customers", _n(summary["customers_now"]), _signed(change)),
        ("New customers", _n(summary["new_customers"]), ""),
        (
            "Revenue",
            f"{_e(summary['revenue'])} {_e(currency)}",
            f"week before {_e(summary['revenue_before'])}",
        ),
        ("Segment moves", _n(summary["moves"]["changed"]), "customers in another segment"),
        ("Alerts", _n(len(summary["alerts"])), ""),
    ]
    kpi_html = "".join(
        f'<div class="kpi" data-kpi="{_e(name)}"><span class="muted">{_e(name)}</span><b>{value}</b>'
        f'<span class="muted">{note}</span></div>'
        for name, value, note in kpis
    )
    seg_rows = "".join(
        f'<tr data-segment="{_e(s["segment"])}"><td>{_e(s["segment"])}</td>'
        f"<td>{_n(s['customers_before'])}</td>"
        f'<td class="now">{_n(s["customers_now"])}</td><td>{_signed(s["change"], s["change_pct"])}</td>'
        f"<td>{_e(s['revenue_now'])}</td><td>{_num(s['mean_frequency_now'], 2)}</td>"
        f"<td>{_num(s['mean_recency_days_now'])}</td></tr>"
        for s in summary["segments"]
    )
    move_rows = (
        "".join(
            f"<tr><td>{_e(m['from'])} → {_e(m['to'])}</td><td>{_n(m['customers'])}</td></tr>"
            for m in summary["moves"]["top"]
        )
        or '<tr><td colspan="2" class="muted">no customer changed segment</td></tr>'
    )
    change_rows = (
        "".join(
            f"<li>{_e(c['segment'])}: {_signed(c['change'], c['change_pct'])}</li>"
            for c in summary["biggest_changes"]
        )
        or '<li class="muted">no segment changed size</li>'
    )
    alert_rows = (
        "".join(
            f"<tr><td>{_e(a['fired_at'][:16].replace('T', ' '))}</td><td>{_e(a['rule'])}</td>"
            f"<td>{_e(a['title'])}</td><td>{_e(a['status'])}</td></tr>"
            for a in summary["alerts"]
        )
        or '<tr><td colspan="4" class="muted">no alert fired</td></tr>'
    )
    runs = summary["run_now"], summary["run_before"]
    basis = (
        f"Sizes from scoring run {runs[0]['run_id']} (as of {runs[0]['as_of']})"
        + (
            f" against run {runs[1]['run_id']} (as of {runs[1]['as_of']})"
            if runs[1]
            else " (no run a week earlier)"
        )
        if runs[0]
        else "No scoring run yet."
    )
    link = (
        f'<p class="muted"><a href="{_e(dashboard_url)}/">Open the dashboard</a></p>' if dashboard_url else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} {_e(summary["from"])} – {_e(summary["to"])} · rfmflow</title><style>{CSS}</style></head>
<body><main>
<h1>{_e(title)}</h1>
<p class="muted">The 7 days after {_e(summary["from"])} up to {_e(summary["to"])}
({_e(summary["timezone"])}). {_e(basis)}</p>
<div class="kpis">{kpi_html}</div>
<h2>Segments</h2>
{size_chart(summary["segments"])}
<table id="segments"><thead><tr><th>Segment</th><th>A week ago</th><th>Now</th><th>Change</th>
<th>Revenue ({_e(currency)})</th><th>Mean frequency</th><th>Mean recency (days)</th></tr></thead>
<tbody>{seg_rows}</tbody></table>
<h2>Biggest changes</h2><ul id="changes">{change_rows}</ul>
<h2>Moves between segments</h2>
<table id="moves"><thead><tr><th>From → to</th><th>Customers</th></tr></thead>
<tbody>{move_rows}</tbody></table>
<h2>Alerts</h2>
<table id="alerts"><thead><tr><th>Fired (UTC)</th><th>Rule</th><th>What</th><th>Delivery</th></tr></thead>
<tbody>{alert_rows}</tbody></table>
{link}
</main></body></html>
"""


__all__ = ["render_report", "size_chart"]

"""The HTML report: content, escaping, self-containment and the awkward cases (RF-only, nulls)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import markupsafe
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import rfmflow
from rfmflow.core.results import NO_SEGMENT, InputStats, ScoreBand, SegmentSummary, Warning
from rfmflow.core.scheme import Scheme, scheme_from_yaml
from rfmflow.report import render_html
from rfmflow.result import ScoreResult

RFM11 = Path(rfmflow.__file__).parent / "schemes" / "rfm11.yaml"

RF_ONLY_YAML = """
name: rf-only
version: 2
scores:
  recency: {edges: [5, 15, 30, 60]}
  frequency: {edges: [1, 3, 6, 10]}
  monetary: null
segments:
  - {name: Active, when: r_score >= 4, action: Keep them close}
  - {name: Drifting, when: true, action: Nudge them}
"""

SINGLE_YAML = """
name: everyone
segments:
  - {name: Everybody, when: true, action: Say hello}
"""

ODD_NAMES_YAML = """
name: odd
segments:
  - {name: "Big $pender $", when: "r_score >= 4"}
  - {name: "高价值 клиенты", when: true}
"""

# src=/href=/url( pointing anywhere off the page (http, https or protocol-relative).
EXTERNAL_REF = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?\s*|url\(\s*["']?\s*)(?:https?:)?//""", re.I)


def _scores(values: np.ndarray, bins: int, *, descending: bool = False) -> np.ndarray:
    """Equal-share scores 1..bins, ties kept together (nulls get 1); descending: low value, high score."""
    ranks = pd.Series(values).rank(method="min", ascending=not descending).to_numpy()
    scores = np.ceil(ranks * bins / len(values))
    return np.asarray(np.clip(np.nan_to_num(scores, nan=1.0), 1, bins), dtype=np.int64)


def _bands(values: np.ndarray, scores: np.ndarray, bins: int) -> list[ScoreBand]:
    """Observed low/high/customers per score."""
    frame = pd.DataFrame({"v": values, "s": scores}).dropna()
    grouped = frame.groupby("s")["v"].agg(["min", "max", "count"])
    seen = {int(s): (float(lo), float(hi), int(c)) for s, lo, hi, c in grouped.itertuples()}
    return [ScoreBand(score, *seen.get(score, (None, None, 0))) for score in range(1, bins + 1)]


def _summaries(frame: pd.DataFrame) -> list[SegmentSummary]:
    """The segment summary table, computed with pandas."""
    total = len(frame)
    positive = float(frame["monetary"].clip(lower=0).sum()) or 1.0
    out = []
    for name, group in frame.groupby("segment", sort=False):
        recency = group["recency_days"].mean()
        revenue = float(group["monetary"].sum())
        out.append(
            SegmentSummary(
                segment=str(name),
                customers=len(group),
                share=len(group) / total,
                mean_recency_days=None if pd.isna(recency) else float(recency),
                mean_frequency=float(group["frequency"].mean()),
                mean_monetary=float(group["monetary"].mean()),
                revenue=Decimal(f"{revenue:.2f}"),
                revenue_share=revenue / positive,
            )
        )
    return out


def make_result(
    scheme: Scheme,
    *,
    n: int = 400,
    seed: int = 7,
    warnings: list[Warning] | None = None,
    recency_nulls: int = 0,
    decimal_monetary: bool = False,
    as_of_is_default: bool = True,
) -> ScoreResult:
    """A hand-built ScoreResult with plausible, skewed data and segments taken from ``scheme``."""
    rng = np.random.default_rng(seed)
    recency = rng.integers(0, 365, n).astype(np.float64)
    if recency_nulls:
        recency[:recency_nulls] = np.nan
    frequency = rng.geometric(0.3, n).astype(np.float64)
    monetary = np.round(rng.lognormal(3.5, 1.0, n) * frequency, 2)
    monetary[-3:] = [-25.0, 0.0, 9_000.0]  # a refund, nothing, a whale
    r = _scores(recency, 5, descending=True)
    f = _scores(frequency, 5)
    has_m = scheme.has_monetary_score
    m = _scores(monetary, 5) if has_m else None
    names = [rule.name for rule in scheme.segments]
    segment = np.array(names, dtype=object)[(r - 1) % len(names)]
    if len(names) > 2:
        segment[f == 1] = NO_SEGMENT  # some customers match no rule
    frame = pd.DataFrame(
        {"recency_days": recency, "frequency": frequency, "monetary": monetary, "segment": segment}
    )
    money = pa.array(monetary, pa.float64())
    if decimal_monetary:
        money = pa.array([Decimal(f"{v:.2f}") for v in monetary], pa.decimal128(18, 2))
    rfm = [f"{a}{b}{c}" for a, b, c in zip(r, f, m if m is not None else [""] * n, strict=True)]
    table = pa.table(
        {
            "customer_id": pa.array([f"c{i:05d}" for i in range(n)]),
            "recency_days": pa.array(recency, pa.float64(), from_pandas=True).cast(pa.int64()),
            "frequency": pa.array(frequency.astype(np.int64)),
            "monetary": money,
            "r_score": pa.array(r),
            "f_score": pa.array(f),
            "m_score": pa.array(m) if m is not None else pa.nulls(n, pa.int64()),
            "rfm": pa.array(rfm),
            "segment": pa.array(segment.tolist(), pa.string()),
            "tenure_days": pa.array((np.nan_to_num(recency) + 30).astype(np.int64)),
        }
    )
    bands = {"recency": _bands(recency, r, 5), "frequency": _bands(frequency, f, 5)}
    if m is not None:
        bands["monetary"] = _bands(monetary, m, 5)
    return ScoreResult(
        customers=table,
        scheme=scheme,
        as_of=date(2024, 7, 1),
        as_of_is_default=as_of_is_default,
        summaries=_summaries(frame),
        bands=bands,
        warnings=warnings or [],
        input=InputStats(
            "orders <2024>.csv", n * 3, 2, "orders.rejects.csv", date(2023, 7, 1), date(2024, 6, 30)
        ),
        notes=["monetary is net of refunds"],
        currency="EUR",
        timezone="Europe/Berlin",
    )


@pytest.fixture(scope="module")
def rfm11() -> Scheme:
    return scheme_from_yaml(RFM11.read_text(encoding="utf-8"), source=str(RFM11))


@pytest.fixture(scope="module")
def full(rfm11: Scheme) -> tuple[ScoreResult, str]:
    result = make_result(rfm11, warnings=[Warning("top-segment-too-large", "segment <b>Champions</b> & co")])
    return result, render_html(result)


def _svg_count(html: str) -> int:
    return len(re.findall(r"<svg\b", html))


def _row(html: str, name: str) -> str:
    """The table row of segment ``name``."""
    cell = rf'<th scope="row"><span class="segment-name">{re.escape(name)}</span>'
    match = re.search(rf"<tr[^>]*>\s*{cell}.*?</tr>", html, re.S)
    assert match, f"no table row for {name!r}"
    return match.group(0)


def test_header_shows_the_run(full: tuple[ScoreResult, str]) -> None:
    _, html = full
    assert html.startswith("<!DOCTYPE html>")
    assert "rfm11" in html and "v1" in html
    assert "2024-07-01" in html and "(default: day after the last event)" in html
    assert "Europe/Berlin" in html and "EUR" in html
    assert "orders &lt;2024&gt;.csv" in html  # the source name is escaped too
    assert "1,200" in html  # rows read
    assert "2023-07-01 \u2013 2024-06-30 (366 days)" in html
    assert "monetary is net of refunds" in html


def test_segment_table_has_names_counts_and_actions(full: tuple[ScoreResult, str], rfm11: Scheme) -> None:
    result, html = full
    actions = {rule.name: rule.action for rule in rfm11.segments}
    assert len(result.summaries) >= 3
    for summary in result.summaries:
        name = str(markupsafe.escape(summary.segment))
        row = _row(html, name)
        assert f">{summary.customers:,}<" in row
        assert f"{summary.share * 100:.1f}%" in row
        if summary.segment != NO_SEGMENT:
            assert str(markupsafe.escape(actions[summary.segment])) in row
    assert 'class="unmatched"' in html  # the (no segment) row stands out


def test_charts_are_inline_svg_with_unique_ids(full: tuple[ScoreResult, str]) -> None:
    _, html = full
    assert _svg_count(html) == 6  # segments, 2 heat maps, R/F/M histograms
    for chart in (
        "chart-segments",
        "chart-heat-customers",
        "chart-heat-revenue",
        "chart-recency",
        "chart-frequency",
        "chart-monetary",
    ):
        assert f'id="{chart}"' in html
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "SVG ids must not collide between charts"
    assert "x axis is logarithmic" in html  # monetary is very skewed


def test_page_is_self_contained(full: tuple[ScoreResult, str]) -> None:
    _, html = full
    assert not EXTERNAL_REF.search(html)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    assert "<img" not in html.lower()
    assert "max-width: 100%" in html and "overflow-x: auto" in html  # phone friendly
    assert 'name="viewport"' in html


def test_warnings_are_shown_and_escaped(full: tuple[ScoreResult, str]) -> None:
    _, html = full
    assert "top-segment-too-large" in html
    assert "segment &lt;b&gt;Champions&lt;/b&gt; &amp; co" in html
    assert "<b>Champions</b>" not in html
    assert "No warnings" not in html


def test_no_warnings_says_so(rfm11: Scheme) -> None:
    html = render_html(make_result(rfm11, warnings=[], as_of_is_default=False))
    assert "No warnings" in html
    assert "(default: day after the last event)" not in html


def test_thresholds_table(full: tuple[ScoreResult, str]) -> None:
    result, html = full
    section = html[html.index('id="thresholds"') :]
    for key in ("recency", "frequency", "monetary"):
        assert f'id="thresholds-{key}"' in section
    band = max(result.bands["recency"], key=lambda b: b.score)
    assert band.high is not None
    assert f'<td class="num">{int(band.high):,}</td><td class="num">{band.customers:,}</td>' in section
    assert "5 quantile bins" in section


def test_rf_only_scheme_has_no_m_chart() -> None:
    scheme = scheme_from_yaml(RF_ONLY_YAML)
    result = make_result(scheme)
    assert result.customers.column("m_score").null_count == result.n_customers
    html = render_html(result)
    assert 'id="chart-monetary"' not in html
    assert 'id="thresholds-monetary"' not in html
    assert 'id="chart-recency"' in html and 'id="chart-frequency"' in html
    assert _svg_count(html) == 5  # segments, 2 heat maps, R and F histograms
    assert "no monetary score" in html
    assert "fixed upper-inclusive edges 5, 15, 30, 60" in html


def test_null_recency_renders(rfm11: Scheme) -> None:
    result = make_result(rfm11, recency_nulls=40)
    assert result.customers.column("recency_days").null_count == 40
    html = render_html(result)
    assert 'id="chart-recency"' in html
    assert "40 customers (10.0%) have no recency_days value" in html


def test_single_segment_and_decimal_monetary() -> None:
    result = make_result(scheme_from_yaml(SINGLE_YAML), decimal_monetary=True)
    assert pa.types.is_decimal(result.customers.column("monetary").type)
    html = render_html(result)
    row = _row(html, "Everybody")
    assert ">400<" in row and "100.0%" in row and "Say hello" in row
    assert _svg_count(html) == 6


def test_odd_segment_names_do_not_break_the_charts() -> None:
    result = make_result(scheme_from_yaml(ODD_NAMES_YAML))  # '$' is not mathtext, CJK glyphs are missing
    html = render_html(result)
    assert "Big $pender $" in html and "高价值 клиенты" in html
    assert _svg_count(html) == 6


def test_empty_result_renders(rfm11: Scheme) -> None:
    full = make_result(rfm11)
    empty = ScoreResult(
        customers=full.customers.slice(0, 0),
        scheme=rfm11,
        as_of=full.as_of,
        as_of_is_default=True,
        summaries=[],
        bands={},
        warnings=[Warning("no-customers", "no customer has a usable event; nothing was scored")],
        input=InputStats("empty.csv", 0, 0, None, None, None),
    )
    html = render_html(empty)
    assert "No customers were scored." in html and "no-customers" in html
    assert _svg_count(html) == 0


def test_rendering_is_deterministic(full: tuple[ScoreResult, str]) -> None:
    result, html = full
    assert render_html(result) == html


def test_rendering_does_not_use_pyplot(rfm11: Scheme) -> None:
    loaded = "matplotlib.pyplot" in sys.modules
    render_html(make_result(rfm11, n=50))
    assert loaded or "matplotlib.pyplot" not in sys.modules


def test_import_builds_nothing() -> None:
    code = "import sys, rfmflow.report; assert 'matplotlib' not in sys.modules, sorted(sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)

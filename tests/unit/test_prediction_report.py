"""The prediction parts of the HTML reports: the page of ``rfmflow predict --html`` and the
Predictions section of the scoring report, built from hand-made results."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, timedelta
from pathlib import Path

import markupsafe
import numpy as np
import pyarrow as pa
import pytest
from test_report import EXTERNAL_REF, RFM11, make_result

from rfmflow.core.prediction_results import (
    Comparison,
    FittedModel,
    Grid,
    Holdout,
    HoldoutRow,
    PredictionReport,
)
from rfmflow.core.results import NO_SEGMENT
from rfmflow.core.scheme import Scheme, scheme_from_yaml
from rfmflow.report import render_html, render_prediction_html
from rfmflow.result import PredictResult, ScoreResult

AS_OF = date(1998, 6, 30)
CAL_END = date(1997, 9, 30)
THRESHOLDS = (0.3, 0.7)


@pytest.fixture(scope="module")
def rfm11() -> Scheme:
    return scheme_from_yaml(RFM11.read_text(encoding="utf-8"), source=str(RFM11))


def _grid_values(freqs: list[int], recs: list[float], age: float, *, expected: bool) -> list[list[float]]:
    """Plausible p_alive (or expected purchases): high for recent, frequent buyers."""
    x = np.array(freqs, dtype=np.float64)[:, None]
    t = np.array(recs, dtype=np.float64)[None, :]
    t = np.where(x == 0, 0.0, t)
    alive = np.where(x == 0, 1.0, np.exp(-x * (age - t) / age * 1.5))
    values = alive * (0.2 + 0.5 * x) if expected else alive
    return [[float(v) for v in row] for row in values]


def make_report(
    *,
    holdout: bool = True,
    comparison: bool = True,
    spend: bool = True,
    grid_size: tuple[int, int] = (41, 25),
    loaded_from: str | None = None,
) -> PredictionReport:
    """A hand-built prediction report with the numbers of a BG/NBD fit on CDNOW."""
    freqs = list(range(grid_size[0]))
    age = 39.0
    recs = [float(v) for v in np.linspace(0.0, age, grid_size[1])]
    rows = [
        HoldoutRow("0", 1411, 0.236, 0.138),
        HoldoutRow("1", 439, 0.642, 0.599),
        HoldoutRow("2", 214, 1.103, 1.187),
        HoldoutRow("3", 100, 1.62, 1.71),
        HoldoutRow("4", 62, 2.31, 2.25),
        HoldoutRow("5", 38, 2.74, 2.81),
        HoldoutRow("6", 29, 3.79, 3.41),
        HoldoutRow("7+", 64, 6.02, 5.58),
    ]
    return PredictionReport(
        purchase_model=FittedModel(
            key="bgnbd",
            name="BG/NBD",
            params={"r": 0.24259, "alpha": 4.41359, "a": 0.79292, "b": 2.42589},
            standard_errors={"r": 0.01256, "alpha": 0.37818, "a": 0.18564, "b": 0.70581},
            log_likelihood=-9582.4295,
            customers=2357,
            bic=19195.94,
            time_unit="weeks",
        ),
        spend_model=FittedModel(
            key="gamma-gamma",
            name="Gamma-Gamma",
            params={"p": 6.24882, "q": 3.74453, "v": 15.44473},
            standard_errors={"p": 0.44, "q": 0.000412, "v": 2.13},
            log_likelihood=-4050.7,
            customers=946,
            bic=8122.0,
            time_unit=None,
        )
        if spend
        else None,
        time_unit="weeks",
        horizon_days=90,
        clv_horizon_days=365,
        discount_rate=0.1,
        churn_thresholds=THRESHOLDS,
        churn_counts={"low": 1712, "medium": 388, "high": 257},
        customers_predicted=2357,
        customers_without_transactions=4,
        calibration_end=CAL_END if holdout else None,
        holdout=Holdout(
            calibration_end=CAL_END,
            as_of=AS_OF,
            duration=39.0,
            customers=2357,
            actual_total=1788,
            predicted_total=1702.4,
            mae=0.8123,
            rmse=1.5349,
            by_frequency=rows,
        )
        if holdout
        else None,
        comparison=[
            Comparison("bgnbd", "BG/NBD", -9582.43, 4, 19195.9, 0.8123, 1.5349),
            Comparison("pareto-nbd", "Pareto/NBD", -9574.18, 4, 19179.4, 0.8051, 1.5202),
            Comparison("mbgnbd", "MBG/NBD", -9580.02, 4, 19191.1, 0.8114, 1.5337),
            Comparison(
                "bad", "Broken/NBD", float("nan"), 0, float("nan"), None, None, error="did not <converge>"
            ),
        ]
        if comparison
        else [],
        spend_frequency_correlation=0.1136,
        grids=[
            Grid(
                f"Probability alive, by frequency and recency (age {age:.1f} weeks)",
                freqs,
                recs,
                _grid_values(freqs, recs, age, expected=False),
                age,
            ),
            Grid(
                "Expected purchases in the next 12.8571 weeks, by frequency and recency",
                freqs,
                recs,
                _grid_values(freqs, recs, age, expected=True),
                age,
            ),
        ],
        notes=["frequency and spend are <correlated> & so on"],
        loaded_from=loaded_from,
    )


def make_customers(
    n: int = 300, *, seed: int = 3, clv_nulls: int = 25, all_null_clv: bool = False
) -> pa.Table:
    """Per-customer predictions as ``PredictResult.customers`` holds them."""
    rng = np.random.default_rng(seed)
    x = rng.geometric(0.45, n) - 1
    first = np.array([date(1997, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 80, n)])
    span = rng.integers(0, 500, n) * (x > 0)
    last = np.array([f + timedelta(days=int(s)) for f, s in zip(first, span, strict=True)])
    t_x = span / 7
    big_t = np.array([(AS_OF - f).days / 7 for f in first])
    p_alive = np.round(np.where(x == 0, 1.0, rng.beta(2, 1.2, n)), 6)
    expected = np.round(p_alive * (0.2 + 0.3 * x), 6)
    spend = np.round(rng.lognormal(3.3, 0.6, n), 2)
    clv = np.round(expected * spend * rng.lognormal(1.0, 1.2, n), 2)
    clv[-3:] = [0.0, 0.01, 25_000.0]  # nothing, almost nothing, a whale
    clv_mask = np.zeros(n, dtype=bool)
    clv_mask[:clv_nulls] = True
    if all_null_clv:
        clv_mask[:] = True
    risk = np.where(p_alive < THRESHOLDS[0], "high", np.where(p_alive < THRESHOLDS[1], "medium", "low"))
    defined = (x >= 1) & (p_alive >= THRESHOLDS[0])
    wait = rng.integers(5, 200, n)
    return pa.table(
        {
            "customer_id": pa.array([f"c{i:04d}" for i in range(n)]),
            "first_purchase": pa.array(first.tolist(), pa.date32()),
            "last_purchase": pa.array(last.tolist(), pa.date32()),
            "x": pa.array(x.astype(np.int64)),
            "t_x": pa.array(t_x),
            "T": pa.array(big_t),
            "m_x": pa.array(np.where(x > 0, spend, np.nan), from_pandas=True),
            "p_alive": pa.array(p_alive),
            "expected_purchases": pa.array(expected),
            "expected_spend": pa.array(spend, mask=clv_mask),
            "clv": pa.array(clv, mask=clv_mask),
            "churn_risk": pa.array(risk.tolist(), pa.string()),
            "days_to_next_purchase": pa.array(wait, mask=~defined, type=pa.int64()),
            "expected_next_purchase": pa.array(
                [AS_OF + timedelta(days=int(w)) for w in wait], pa.date32(), mask=~defined
            ),
            "holdout_x": pa.array(rng.poisson(expected * 2)),
            "holdout_expected": pa.array(expected * 2),
        }
    )


def make_predict_result(
    scheme: Scheme, report: PredictionReport | None = None, *, all_null_clv: bool = False
) -> PredictResult:
    return PredictResult(
        customers=make_customers(all_null_clv=all_null_clv),
        report=report or make_report(),
        scheme=scheme,
        as_of=AS_OF,
        as_of_is_default=False,
        source="CDNOW <sample>.txt",
        rows_rejected=2,
        rejects_path="CDNOW.rejects.csv",
        notes=["2 rows had no amount"],
        currency="USD",
    )


@pytest.fixture(scope="module")
def page(rfm11: Scheme) -> tuple[PredictResult, str]:
    result = make_predict_result(rfm11)
    return result, render_prediction_html(result)


def _svg_count(html: str) -> int:
    return len(re.findall(r"<svg\b", html))


def _section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}".*?</section>', html, re.S)
    assert match, f"no section {section_id!r}"
    return match.group(0)


def _h2s(html: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", html)


# --- the prediction report -----------------------------------------------------------------------


def test_prediction_page_has_every_section(page: tuple[PredictResult, str]) -> None:
    _, html = page
    assert html.startswith("<!DOCTYPE html>")
    assert _h2s(html) == [
        "Notes",
        "Fitted models",
        "Churn risk",
        "Holdout validation",
        "Model comparison",
        "Frequency &times; recency matrices",
        "Distributions",
        "Top 20 customers by CLV",
    ]
    for chart in (
        "chart-churn",
        "chart-holdout",
        "chart-grid-alive",
        "chart-grid-expected",
        "chart-p-alive",
        "chart-clv",
    ):
        assert f'id="{chart}"' in html
    assert _svg_count(html) == 6
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "SVG ids must not collide between charts"


def test_header_facts(page: tuple[PredictResult, str]) -> None:
    _, html = page
    facts = dict(re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", html, re.S))
    assert facts["Source"] == "CDNOW &lt;sample&gt;.txt"
    assert facts["As of"] == "1998-06-30"
    assert facts["Calibration end"].startswith("1997-09-30")
    assert facts["Customers predicted"] == "2,357"
    assert facts["Customers without transactions"].startswith("4 ")
    assert facts["Model"].startswith("BG/NBD + Gamma-Gamma")
    assert facts["Time unit"] == "weeks"
    assert facts["Horizon"].startswith("90 days")
    assert facts["CLV"].startswith("365 days at 10.0% a year")
    assert facts["Currency"] == "USD"
    assert facts["Rows rejected"] == "2 (see CDNOW.rejects.csv)"
    assert "Loaded from" not in facts
    assert "<title>Prediction report \u2014 BG/NBD \u2014 1998-06-30</title>" in html


def test_loaded_from_is_shown(rfm11: Scheme) -> None:
    html = render_prediction_html(make_predict_result(rfm11, make_report(loaded_from="models <v2>.json")))
    facts = dict(re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", html, re.S))
    assert facts["Loaded from"] == "models &lt;v2&gt;.json"
    assert "parameters loaded, not fitted" in facts["Model"]
    assert "BG/NBD and Gamma-Gamma, parameters loaded from models &lt;v2&gt;.json, not fitted" in html


def test_parameter_tables(page: tuple[PredictResult, str]) -> None:
    _, html = page
    purchase = re.search(r'<div class="model" id="model-bgnbd">.*?</table>', html, re.S)
    spend = re.search(r'<div class="model" id="model-gamma-gamma">.*?</table>', html, re.S)
    assert purchase and spend
    bg = purchase.group(0)
    assert "BG/NBD" in bg and "purchase model, time in weeks" in bg
    for name, estimate, error in (
        ("r", "0.2426", "0.01256"),
        ("alpha", "4.414", "0.3782"),
        ("a", "0.7929", "0.1856"),
        ("b", "2.426", "0.7058"),
    ):
        row = f'<th scope="row">{name}</th><td class="num">{estimate}</td><td class="num">{error}</td>'
        assert row in bg
    assert '<th scope="row">Log-likelihood</th><td class="num">-9,582.43</td>' in bg
    assert '<th scope="row">BIC</th><td class="num">19,195.9</td>' in bg
    assert '<th scope="row">Customers</th><td class="num">2,357</td>' in bg
    gg = spend.group(0)
    assert "Gamma-Gamma" in gg and "spend model" in gg and "time in" not in gg
    assert '<th scope="row">q</th><td class="num">3.745</td><td class="num">4.120e-04</td>' in gg
    assert '<th scope="row">Customers</th><td class="num">946</td>' in gg
    assert "r = 0.11" in html and "is fine" in html  # the spend/frequency correlation


def test_no_spend_model(rfm11: Scheme) -> None:
    html = render_prediction_html(make_predict_result(rfm11, make_report(spend=False), all_null_clv=True))
    assert 'id="model-gamma-gamma"' not in html
    assert "No spend model was fitted" in html
    assert 'id="chart-clv"' not in html and 'id="chart-p-alive"' in html
    assert "No customer has a CLV" in html


def test_churn_counts(page: tuple[PredictResult, str]) -> None:
    _, html = page
    churn = _section(html, "churn")
    assert "Churn risk (high: p_alive &lt; 0.3, medium: &lt; 0.7, low: \u2265 0.7)" in churn
    total = 1712 + 388 + 257
    for level, count in (("high", 257), ("medium", 388), ("low", 1712)):
        assert re.search(
            rf'risk-{level}">{level}</span></th><td>[^<]*</td><td class="num">{count:,}</td>'
            rf'<td class="num">{count / total * 100:.1f}%</td>',
            churn,
        )
    assert "customers without a repeat purchase get p_alive = 1" in churn  # BG/NBD's known quirk


def test_holdout_chart_and_table(page: tuple[PredictResult, str]) -> None:
    _, html = page
    holdout = _section(html, "holdout")
    assert 'id="chart-holdout"' in holdout and "<svg" in holdout
    assert "Holdout 1997-10-01 \u2013 1998-06-30 (39 weeks)" in holdout
    assert "<strong>1,788</strong> purchases made, <strong>1,702.4</strong> predicted" in holdout
    assert "MAE <strong>0.812</strong>, RMSE <strong>1.535</strong>" in holdout
    assert "(-4.8%)" in holdout  # predicted vs actual total, in the caption
    for label in ("0", "6", "7+"):
        assert f'<tr><td class="num">{label}</td>' in holdout
    assert '<td class="num">1,411</td><td class="num">0.236</td><td class="num">0.138</td>' in holdout


def test_no_holdout_no_holdout_chart(rfm11: Scheme) -> None:
    html = render_prediction_html(make_predict_result(rfm11, make_report(holdout=False, comparison=False)))
    assert 'id="chart-holdout"' not in html and 'id="holdout"' not in html
    assert "Holdout validation" not in html and 'href="#holdout"' not in html
    assert 'id="comparison"' not in html and "Model comparison" not in html
    assert "Calibration end" not in html and "fitted on all events" in html
    assert _svg_count(html) == 5


def test_comparison_marks_the_lowest_bic(page: tuple[PredictResult, str]) -> None:
    _, html = page
    table = _section(html, "comparison")
    assert table.count('class="best"') == 1 and table.count("lowest BIC</span>") == 1
    best = re.search(r'<tr class="best">(.*?)</tr>', table, re.S)
    assert best and "Pareto/NBD" in best.group(1) and "19,179.4" in best.group(1)
    assert "0.8051" in best.group(1) and "1.5202" in best.group(1)
    assert "BG/NBD" in table and "MBG/NBD" in table
    assert "not fitted: did not &lt;converge&gt;" in table  # the failed model is listed, escaped


def test_matrices(page: tuple[PredictResult, str]) -> None:
    _, html = page
    matrices = _section(html, "matrices")
    assert "Probability alive, by frequency and recency (age 39.0 weeks)" in matrices
    assert "Expected purchases in the next 12.8571 weeks" in matrices
    assert "first seen 39.0 weeks before the end" in matrices
    assert matrices.count("<svg") == 2


def test_small_matrices_print_their_values(rfm11: Scheme) -> None:
    html = render_prediction_html(make_predict_result(rfm11, make_report(grid_size=(4, 5))))
    assert 'id="chart-grid-alive"' in html and 'id="chart-grid-expected"' in html


def test_distributions_handle_null_clv(page: tuple[PredictResult, str]) -> None:
    result, html = page
    dist = _section(html, "distributions")
    assert "25 customers (8.3%) have no clv" in dist
    assert "x axis is logarithmic" in dist  # the long tail
    clv = result.customers.column("clv").to_pandas()
    assert f"median ({clv.median():,.2f})" in dist
    assert f"total {clv.sum():,.2f}" in dist
    assert "dashed lines: the churn risk thresholds" in dist


def test_top_customers_by_clv(page: tuple[PredictResult, str]) -> None:
    result, html = page
    top = _section(html, "top-customers")
    frame = result.customers.to_pandas().dropna(subset=["clv"]).sort_values("clv", ascending=False)
    rows = re.findall(r'<th scope="row">(c\d{4})</th>\s*<td class="num">([^<]*)</td>', top)
    ids = [customer for customer, _ in rows]
    assert ids == frame["customer_id"].head(20).tolist()
    assert [clv for _, clv in rows] == [f"{v:,.2f}" for v in frame["clv"].head(20)]
    assert rows[0][1] == "25,000.00"  # the whale comes first
    assert "CLV (USD)" in top
    nulls = set(result.customers.to_pandas().loc[lambda f: f["clv"].isna(), "customer_id"])
    assert not nulls & set(ids)


def test_notes_are_shown_and_escaped(page: tuple[PredictResult, str]) -> None:
    _, html = page
    notes = _section(html, "notes")
    assert "frequency and spend are &lt;correlated&gt; &amp; so on" in notes
    assert "2 rows had no amount" in notes
    assert "<correlated>" not in html


def test_prediction_page_is_self_contained(page: tuple[PredictResult, str]) -> None:
    _, html = page
    assert not EXTERNAL_REF.search(html)
    # The only URLs are the SVG namespace names, which nothing fetches.
    unfetched = re.sub(r'\bxmlns(?::\w+)?="http://www\.w3\.org/[^"]*"', "", html)
    assert "http://" not in unfetched and "https://" not in unfetched
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    assert "<img" not in html.lower()
    assert "max-width: 100%" in html and "overflow-x: auto" in html and 'name="viewport"' in html
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html


def test_prediction_rendering_is_deterministic(page: tuple[PredictResult, str]) -> None:
    result, html = page
    assert render_prediction_html(result) == html


def test_no_customers_renders(rfm11: Scheme) -> None:
    result = make_predict_result(rfm11)
    empty = dataclasses.replace(result, customers=result.customers.slice(0, 0))
    html = render_prediction_html(empty)
    assert "No predictions to show." in html and "No customer has a CLV." in html
    assert 'id="chart-churn"' in html  # from the report's counts


# --- the scoring report's Predictions section ----------------------------------------------------


def _with_predictions(result: ScoreResult, *, unpredicted: int = 10) -> ScoreResult:
    """``result`` with prediction columns beside the scores (the first customers have none)."""
    n = result.n_customers
    preds = make_customers(n, seed=11)
    table = result.customers
    for name in (
        "p_alive",
        "expected_purchases",
        "expected_spend",
        "clv",
        "churn_risk",
        "days_to_next_purchase",
        "expected_next_purchase",
    ):
        column = preds.column(name).combine_chunks()
        mask = np.zeros(n, dtype=bool)
        mask[:unpredicted] = True
        column = pa.array(column.to_pylist(), column.type, mask=mask | column.is_null().to_numpy(False))
        table = table.append_column(name, column)
    return dataclasses.replace(result, customers=table, predictions=make_report())


def test_score_report_without_predictions_is_unchanged(rfm11: Scheme) -> None:
    base = make_result(rfm11)
    html = render_html(base)
    assert "Predictions" not in html and 'id="predictions"' not in html
    assert ".badge" not in html  # not even the CSS of the section
    with_predictions = render_html(_with_predictions(base))
    # Take the section, its link and its CSS out and the page is the same as without predictions.
    stripped = re.sub(r'<section id="predictions">.*?</section>\n\n', "", with_predictions, flags=re.S)
    stripped = stripped.replace('      <li><a href="#predictions">Predictions</a></li>\n', "")
    stripped = re.sub(r"\.models \{.*?\.alert\.note \{[^}]*\}\n", "", stripped, flags=re.S)
    assert stripped == html


def test_score_report_with_predictions(rfm11: Scheme) -> None:
    result = _with_predictions(make_result(rfm11))
    html = render_html(result)
    section = _section(html, "predictions")
    assert '<li><a href="#predictions">Predictions</a></li>' in html
    assert html.index('id="segments"') < html.index('id="predictions"') < html.index('id="rf-grid"')
    for heading in (
        "Churn risk by segment",
        "Churn risk",
        "Fitted models",
        "Holdout validation",
        "Model comparison",
        "Frequency &times; recency matrices",
    ):
        assert f">{heading}</h3>" in section
    for chart in (
        "chart-segment-churn",
        "chart-churn",
        "chart-holdout",
        "chart-grid-alive",
        "chart-grid-expected",
    ):
        assert f'id="{chart}"' in section
    assert section.count("<svg") == 5
    assert "Total CLV (EUR)" in section
    assert '<th scope="row">alpha</th><td class="num">4.414</td>' in section
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    assert not EXTERNAL_REF.search(html) and "<script" not in html.lower()


def test_score_report_churn_by_segment(rfm11: Scheme) -> None:
    result = _with_predictions(make_result(rfm11), unpredicted=10)
    html = render_html(result)
    section = _section(html, "predictions")
    frame = result.customers.to_pandas()
    assert "No prediction</th>" in section  # ten customers have none
    order = [s.segment for s in result.summaries]
    rows = re.findall(r'<span class="segment-name">(.*?)</span></th>((?:\s*<td[^>]*>[^<]*</td>)+)', section)
    assert [name for name, _ in rows] == [str(markupsafe.escape(s)) for s in order]
    for (_, cells), name in zip(rows, order, strict=True):
        group = frame[frame["segment"] == name]
        values = re.findall(r"<td[^>]*>([^<]*)</td>", cells)
        risk = group["churn_risk"]
        assert values[:5] == [
            f"{len(group):,}",
            f"{(risk == 'high').sum():,}",
            f"{(risk == 'medium').sum():,}",
            f"{(risk == 'low').sum():,}",
            f"{risk.isna().sum():,}",
        ]
        assert values[5] == f"{group['p_alive'].mean():,.3f}"
        assert values[6] == f"{group['expected_purchases'].mean():,.2f}"
        clv = group["clv"]
        assert values[7] == (f"{clv.sum():,.2f}" if clv.notna().any() else "\u2014")
    assert NO_SEGMENT in order


def test_score_report_all_predicted_has_no_unpredicted_column(rfm11: Scheme) -> None:
    html = render_html(_with_predictions(make_result(rfm11, n=120), unpredicted=0))
    section = _section(html, "predictions")
    assert "No prediction</th>" not in section
    assert "customers without a transaction" not in section


def test_prediction_table_columns_can_be_missing(rfm11: Scheme) -> None:
    """A scoring result whose report is set but whose rows lack the prediction columns still renders."""
    result = dataclasses.replace(make_result(rfm11, n=80), predictions=make_report(holdout=False))
    html = render_html(result)
    assert "No per-customer churn risk to show." in html
    assert 'id="chart-churn"' in html and 'id="chart-holdout"' not in html


# --- a real run ----------------------------------------------------------------------------------

SAMPLE_READ: dict[str, object] = {
    "delimiter": "whitespace",
    "header": False,
    "column_names": ["customer_id", "sample_index", "date", "cds", "amount"],
}


def test_real_prediction_run_renders(cdnow_master: Path) -> None:
    """CDNOW's sample through rfmflow.predict (calibration and comparison) and rfmflow.score."""
    import rfmflow

    sample = cdnow_master.with_name("CDNOW_sample.txt")
    result = rfmflow.predict(
        sample, model="bgnbd", calibration_end=CAL_END, as_of=AS_OF, compare=True, **SAMPLE_READ
    )
    html = render_prediction_html(result)
    assert _h2s(html)[-7:] == [
        "Fitted models",
        "Churn risk",
        "Holdout validation",
        "Model comparison",
        "Frequency &times; recency matrices",
        "Distributions",
        "Top 20 customers by CLV",
    ]
    assert _svg_count(html) == 6
    assert '<th scope="row">alpha</th><td class="num">4.414</td>' in html  # the published BG/NBD fit
    comparison = _section(html, "comparison")
    best = min(result.report.comparison, key=lambda c: c.bic)
    marked = re.search(r'<tr class="best"><th scope="row">(.*?) <span class="badge">', comparison)
    assert marked and marked.group(1) == best.name
    assert len(re.findall(r'<th scope="row">\d{5}</th>', _section(html, "top-customers"))) == 20
    assert not EXTERNAL_REF.search(html) and "<script" not in html.lower()

    scored = rfmflow.score(sample, as_of=AS_OF, predict=True, **SAMPLE_READ)
    assert scored.predictions is not None
    page = render_html(scored)
    section = _section(page, "predictions")
    assert 'id="chart-segment-churn"' in section and 'id="chart-grid-alive"' in section
    frame = scored.customers.to_pandas()
    champions = frame[frame["segment"] == "Champions"]
    row = re.search(
        r'<span class="segment-name">Champions</span></th>\s*<td class="num">([\d,]+)</td>', section
    )
    assert row and row.group(1) == f"{len(champions):,}"

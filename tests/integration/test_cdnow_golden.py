"""Golden tests on the real CDNOW data: every customer's R, F, M and scores, checked
against an independent computation written here in plain Python."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import rfmflow


def _independent(path: Path) -> tuple[date, dict[str, tuple[date, int, Decimal, date]]]:
    last: dict[str, date] = {}
    first: dict[str, date] = {}
    count: dict[str, int] = defaultdict(int)
    spend: dict[str, Decimal] = defaultdict(Decimal)
    lines = path.read_text().splitlines()
    assert lines[0].split() == ["customer_id", "date", "number_of_cds", "dollar_value"]
    for line in lines[1:]:
        cust, day_text, _cds, value = line.split()
        day = date(int(day_text[:4]), int(day_text[4:6]), int(day_text[6:]))
        last[cust] = max(last.get(cust, day), day)
        first[cust] = min(first.get(cust, day), day)
        count[cust] += 1
        spend[cust] += Decimal(value)
    as_of = max(last.values()) + timedelta(days=1)
    return as_of, {c: (last[c], count[c], spend[c], first[c]) for c in last}


def _quantile_scores(values: dict[str, float], bins: int, higher_is_better: bool) -> dict[str, int]:
    """score = 1 + floor(bins * (number of customers strictly worse) / n); the best value gets
    the top score (unless all values are equal)."""
    ordered = sorted(values.values(), reverse=not higher_is_better)
    n = len(ordered)
    worse_than: dict[float, int] = {}
    for i, v in enumerate(ordered):
        worse_than.setdefault(v, i)
    best = ordered[-1]
    return {
        c: bins if v == best and worse_than[v] > 0 else 1 + (bins * worse_than[v]) // n
        for c, v in values.items()
    }


@pytest.fixture(scope="module")
def golden(cdnow_master: Path) -> tuple[date, dict[str, tuple[date, int, Decimal, date]]]:
    return _independent(cdnow_master)


@pytest.fixture(scope="module")
def rfm11(cdnow_master: Path) -> rfmflow.ScoreResult:
    return rfmflow.score(cdnow_master, scheme="rfm11")


def test_every_customer_metrics_match_an_independent_computation(rfm11, golden) -> None:
    as_of, expected = golden
    assert rfm11.as_of == as_of == date(1998, 7, 1)
    assert rfm11.as_of_is_default
    rows = rfm11.customers.to_pylist()
    assert len(rows) == len(expected) == 23570
    for row in rows:
        last, count, spend, first = expected[row["customer_id"]]
        assert row["recency_days"] == (as_of - last).days
        assert row["frequency"] == count
        assert row["monetary"] == spend  # exact decimal, not a float
        assert row["tenure_days"] == (as_of - first).days


def test_quantile_scores_match_the_rank_definition(rfm11, golden) -> None:
    as_of, expected = golden
    rec = {c: float((as_of - v[0]).days) for c, v in expected.items()}
    freq = {c: float(v[1]) for c, v in expected.items()}
    mon = {c: float(v[2]) for c, v in expected.items()}
    r = _quantile_scores(rec, 5, higher_is_better=False)
    f = _quantile_scores(freq, 5, higher_is_better=True)
    m = _quantile_scores(mon, 5, higher_is_better=True)
    for row in rfm11.customers.to_pylist():
        c = row["customer_id"]
        assert (row["r_score"], row["f_score"], row["m_score"]) == (r[c], f[c], m[c])
        assert row["rfm"] == f"{r[c]}{f[c]}{m[c]}"


def test_ties_get_equal_scores_and_the_collapse_is_reported(rfm11) -> None:
    by_freq: dict[int, set[int]] = defaultdict(set)
    for row in rfm11.customers.to_pylist():
        by_freq[row["frequency"]].add(row["f_score"])
    assert all(len(scores) == 1 for scores in by_freq.values())
    assert by_freq[1] == {1}  # about half of CDNOW bought once: they all share the lowest score
    codes = [w.code for w in rfm11.warnings]
    assert "bins-collapsed" in codes


def test_segment_summary_adds_up(rfm11, golden) -> None:
    _, expected = golden
    assert sum(s.customers for s in rfm11.summaries) == 23570
    assert sum(s.revenue for s in rfm11.summaries) == sum(v[2] for v in expected.values())
    assert abs(sum(s.share for s in rfm11.summaries) - 1) < 1e-9
    names = {s.segment for s in rfm11.summaries}
    assert "(no segment)" not in names


def test_telegram_scrm_scoring_table_on_cdnow(cdnow_master: Path) -> None:
    result = rfmflow.score(cdnow_master, scheme="telegram-scrm", as_of="1997-03-31", drop_after_as_of=True)
    cut = date(1997, 3, 31)
    for row in result.customers.to_pylist():
        days = row["recency_days"]
        r = 5 if days <= 5 else 4 if days <= 15 else 3 if days <= 30 else 2 if days <= 60 else 1
        f_count = row["frequency"]
        f = 1 if f_count <= 1 else 2 if f_count <= 3 else 3 if f_count <= 6 else 4 if f_count <= 10 else 5
        m_val = row["monetary"]
        m = 1 if m_val <= 0 else 2 if m_val <= 50 else 3 if m_val <= 200 else 4 if m_val <= 500 else 5
        assert (row["r_score"], row["f_score"], row["m_score"]) == (r, f, m)
        assert days >= 0 and (cut - timedelta(days=days)) <= cut
    assert result.as_of == cut and not result.as_of_is_default


def test_crm_lists_every_segment_even_empty_ones(cdnow_master: Path, golden) -> None:
    """CDNOW is a 1997 Q1 cohort followed to mid-1998: nobody has a single order within 30
    days of the end, so 'Recent Customers' is empty; it must still be listed, with 0."""
    as_of, expected = golden
    result = rfmflow.score(cdnow_master, scheme="crm")
    assert [s.segment for s in result.summaries] == [s.name for s in result.scheme.segments]
    by_name = {s.segment: s for s in result.summaries}
    assert by_name["Recent Customers"].customers == 0
    recent_single = [c for c, v in expected.items() if (as_of - v[0]).days <= 30 and v[1] == 1]
    assert recent_single == []
    hibernating = sum(1 for v in expected.values() if (as_of - v[0]).days > 180)
    assert by_name["Hibernating"].customers == hibernating


def test_fixed_bands_state_their_bounds_exactly(cdnow_master: Path) -> None:
    result = rfmflow.score(cdnow_master, scheme="telegram-scrm")
    m = {b.score: (b.low, b.high, b.low_open) for b in result.bands["monetary"]}
    assert m == {1: (None, 0.0, False), 2: (0.0, 50.0, True), 3: (50.0, 200.0, True),
                 4: (200.0, 500.0, True), 5: (500.0, None, True)}  # fmt: skip
    r = {b.score: (b.low, b.high) for b in result.bands["recency"]}
    assert r == {5: (None, 5.0), 4: (6.0, 15.0), 3: (16.0, 30.0), 2: (31.0, 60.0), 1: (61.0, None)}
    counted = {b.score: b.customers for b in result.bands["monetary"]}
    rows = result.customers.to_pylist()
    assert counted[5] == sum(1 for row in rows if row["monetary"] > 500)
    assert counted[4] == sum(1 for row in rows if 200 < row["monetary"] <= 500)

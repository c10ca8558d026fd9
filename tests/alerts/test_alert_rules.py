"""The rule kinds as pure functions: parameters checked with the field named, each kind firing on
the data it watches and not on other data, and occurrence keys that stay the same for as long as
a condition lasts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rfmflow.alerts.rules import (
    BroadcastPoint,
    RuleError,
    RunPoint,
    check_params,
    check_target,
    evaluate_broadcasts,
    evaluate_no_events,
    evaluate_segment,
)
from rfmflow.alerts.store import check_rule

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def runs(sizes: list[int], *, segment: str = "At Risk", freq: list[float] | None = None) -> list[RunPoint]:
    """One run per day with ``segment`` at these sizes (and a steady Champions)."""
    out = []
    for i, n in enumerate(sizes):
        stats = {"customers": n, "revenue_minor": n * 100, "mean_recency_days": 50.0, "mean_frequency": 2.0}
        if freq is not None:
            stats["mean_frequency"] = freq[i]
        out.append(
            RunPoint(
                i + 1, 20000 + i, {segment: stats, "Champions": {"customers": 10, "mean_frequency": 5.0}}
            )
        )
    return out


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("segment_growth", {"pct": 20, "days": 7}, "params.segment"),
        ("segment_growth", {"segment": "At Risk", "pct": "lots", "days": 7}, "params.pct"),
        ("segment_growth", {"segment": "At Risk", "pct": 20, "days": 0}, "params.days"),
        ("segment_growth", {"segment": "At Risk", "pct": 20, "days": 7, "extra": 1}, "params.extra"),
        ("segment_metric_drop", {"segment": "X", "metric": "height", "pct": 10, "days": 7}, "params.metric"),
        ("segment_metric_drop", {"segment": "X", "metric": "customers", "pct": 150, "days": 7}, "params.pct"),
        ("broadcast_conversion_below", {"min_rate": 2, "min_sent": 10}, "params.min_rate"),
        ("broadcast_conversion_below", {"min_rate": 0.1, "min_sent": 1.5}, "params.min_sent"),
        ("no_events", {}, "params.hours"),
        ("no_events", {"hours": True}, "params.hours"),
        ("weather", {}, "kind"),
    ],
)
def test_bad_parameters_name_the_field(kind: str, params: dict[str, object], field: str) -> None:
    with pytest.raises(RuleError) as caught:
        check_params(kind, params)
    assert caught.value.field == field


def test_targets_and_whole_rules_are_checked() -> None:
    assert check_target("telegram", " -100123 ") == "-100123"
    assert check_target("email", "ops@shop.example") == "ops@shop.example"
    for channel, target in (("telegram", "bob"), ("email", "nope"), ("webhook", "ftp://x"), ("sms", "1")):
        with pytest.raises(RuleError) as caught:
            check_target(channel, target)
        assert caught.value.field in ("target", "channel")
    with pytest.raises(RuleError) as caught:
        check_rule(
            {"name": " ", "kind": "no_events", "params": {"hours": 2}, "channel": "email", "target": "a@b.c"}
        )
    assert caught.value.field == "name"
    ok = check_rule(
        {"name": "quiet", "kind": "no_events", "params": {"hours": 2}, "channel": "email", "target": "a@b.c"}
    )
    assert ok["params"] == {"hours": 2.0} and ok["enabled"] is True


def test_segment_growth_fires_once_per_episode() -> None:
    params = check_params("segment_growth", {"segment": "At Risk", "pct": 20, "days": 7})
    steady = runs([100] * 10)
    assert evaluate_segment("segment_growth", params, steady) is None
    # grows 30% over a week at run 9, and stays grown at run 10: one episode, one key
    grown = runs([100] * 8 + [130, 135])
    first = evaluate_segment("segment_growth", params, grown[:9])
    second = evaluate_segment("segment_growth", params, grown)
    assert first is not None and second is not None
    assert first.key == second.key == "run:9"
    assert second.details["before"] == 100 and second.details["now"] == 135
    # 15% is not more than 20%
    assert evaluate_segment("segment_growth", params, runs([100] * 8 + [115])) is None
    # another segment growing does not fire this rule
    assert evaluate_segment("segment_growth", params, runs([100] * 8 + [300], segment="Loyal")) is None
    # it clears, then comes back: a new key
    back = runs([100] * 8 + [130, 100, 100, 100, 100, 100, 100, 100, 100, 140])
    again = evaluate_segment("segment_growth", params, back)
    assert again is not None and again.key == "run:18"
    # too little history: nothing to compare with
    assert evaluate_segment("segment_growth", params, runs([100, 200])) is None


def test_metric_drop_fires_on_its_metric_only() -> None:
    params = check_params(
        "segment_metric_drop", {"segment": "Champions", "metric": "mean_frequency", "pct": 10, "days": 3}
    )
    data = runs([100] * 6)
    assert evaluate_segment("segment_metric_drop", params, data) is None
    fell = [
        *data[:5],
        RunPoint(6, data[-1].as_of_day, {"Champions": {"customers": 10, "mean_frequency": 4.0}}),
    ]
    found = evaluate_segment("segment_metric_drop", params, fell)
    assert found is not None and found.details["change_pct"] == -20.0
    # the frequency rose: no drop
    rose = [
        *data[:5],
        RunPoint(6, data[-1].as_of_day, {"Champions": {"customers": 10, "mean_frequency": 6.0}}),
    ]
    assert evaluate_segment("segment_metric_drop", params, rose) is None


def test_broadcast_conversion_and_no_events() -> None:
    params = check_params("broadcast_conversion_below", {"min_rate": 0.1, "min_sent": 10})
    started = NOW - timedelta(days=2)
    points = [
        BroadcastPoint(1, "low", "done", started, delivered=50, converted=2),
        BroadcastPoint(2, "good", "done", started, delivered=50, converted=10),
        BroadcastPoint(3, "small", "done", started, delivered=5, converted=0),
        BroadcastPoint(4, "fresh", "running", NOW - timedelta(hours=2), delivered=50, converted=0),
        BroadcastPoint(5, "draft", "draft", None, delivered=0, converted=0),
    ]
    assert [o.key for o in evaluate_broadcasts(params, points, NOW)] == ["broadcast:1"]

    quiet = check_params("no_events", {"hours": 6})
    last = NOW - timedelta(hours=7)
    found = evaluate_no_events(quiet, last, NOW)
    later = evaluate_no_events(quiet, last, NOW + timedelta(hours=5))
    assert found is not None and later is not None and found.key == later.key
    assert evaluate_no_events(quiet, NOW - timedelta(hours=5), NOW) is None
    assert evaluate_no_events(quiet, None, NOW) is None  # never received anything

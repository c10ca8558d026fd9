from __future__ import annotations

import pytest

from rfmflow.core.coverage import check_coverage
from rfmflow.core.errors import SchemeError
from rfmflow.core.scheme import scheme_from_dict, scheme_from_yaml
from rfmflow.schemes import builtin_names, builtin_text, load_scheme


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_scheme_covers_every_score_combination(name: str) -> None:
    scheme = load_scheme(name)
    coverage = check_coverage(scheme)
    assert coverage.complete, coverage.messages()
    assert coverage.never_matching == []
    # the YAML shipped is the YAML shown to users
    assert scheme_from_yaml(builtin_text(name)).name == name


def test_builtins_are_the_ones_documented() -> None:
    assert {"telegram-scrm", "telegram-scrm-rf", "telegram-scrm-messages", "crm", "rfm11"} <= set(
        builtin_names()
    )


def test_telegram_scrm_puts_the_guides_examples_in_their_segments() -> None:
    scheme = load_scheme("telegram-scrm")
    coverage = check_coverage(scheme)
    expected = {
        "High-Value": ["555", "455"],
        "Key Growth": ["443", "533"],
        "Retain": ["334", "442"],
        "At-Risk": ["224", "133"],
        "Churned": ["111", "112"],
    }
    for segment, combos in expected.items():
        for combo in combos:
            assert combo in coverage.by_segment[segment], (segment, combo)
    assert sum(len(v) for v in coverage.by_segment.values()) == 125
    tags = {t.name: t.when for t in scheme.tags}
    assert tags["High-Value Customers"].matches({"r_score": 4, "f_score": 4, "m_score": 4}) is True
    assert tags["High-Value Customers"].matches({"r_score": 4, "f_score": 3, "m_score": 5}) is False
    assert tags["At-Risk"].matches({"r_score": 2, "f_score": 2}) is True
    assert tags["At-Risk"].matches({"r_score": 3, "f_score": 1}) is False


def test_rfm11_has_the_eleven_segments() -> None:
    names = [s.name for s in load_scheme("rfm11").segments]
    assert len(names) == 11
    assert {"Champions", "Loyal", "Potential Loyalists", "New", "Promising", "Need Attention",
            "About to Sleep", "At Risk", "Can't Lose Them", "Hibernating", "Lost"} == set(names)  # fmt: skip


def test_crm_has_the_six_segments_of_the_guide() -> None:
    names = [s.name for s in load_scheme("crm").segments]
    assert names == [
        "Champions",
        "Loyal Customers",
        "Recent Customers",
        "Potential Loyalists",
        "At-Risk",
        "Hibernating",
    ]


MINIMAL = {"name": "t", "segments": [{"name": "All", "when": True}]}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"segments": [{"name": "A", "wen": "r_score > 1"}]},
            "segments[0].wen: unknown field (did you mean 'when'?)",
        ),
        ({"segments": [{"name": "A", "when": "r_scor > 1"}]}, "did you mean 'r_score'?"),
        ({"segments": []}, "segments: List should have at least 1 item"),
        ({"scores": {"recency": {"edges": [5, 3]}}}, "must be strictly ascending"),
        ({"scores": {"recency": {"quantiles": 5, "edges": [1]}}}, "give exactly one of 'quantiles'"),
        ({"scores": {"recency": {"quantiles": 1}}}, "scores.recency.quantiles"),
        ({"metrics": {"monetary": {"measure": "avg"}}}, "must be 'amount', 'count' or 'field:<column name>'"),
        ({"metrics": {"frequency": {"window_days": 0}}}, "metrics.frequency.window_days"),
        ({"metrics": {"recency": {"event": ["purchase"]}}}, "unknown field (did you mean 'events'?)"),
        ({"segments": [{"name": "A", "when": True}, {"name": "A", "when": True}]}, "defined twice"),
        ({"columns": {"Bad Name": "r_score"}}, "lower_snake_case"),
        ({"columns": {"n_all": "r_score * 100"}}, "standard or internal columns"),
        ({"columns": {"recency_rank": "f_score"}}, "standard or internal columns"),
        ({"segments": [{"name": "A", "when": "lifecycle == 'new'"}]}, "unknown name 'lifecycle'"),
        ({"segments": [{"name": "A", "when": "rfm > 5"}]}, "cannot compare text with num"),
        ({"segments": [{"name": "A", "when": "'abc'"}]}, "a rule must be a condition"),
        ({"metrics": {"monetary": {"events": []}}}, "metrics.monetary.events"),
        ({"segments": [{"name": "A", "when": 1}]}, "segments[0].when"),
        (
            {"lifecycle": {"new_within_days": 30, "scores": {"recency": {"quantiles": 3}}}},
            "must share the score scale",
        ),
    ],
)
def test_invalid_schemes_name_field_and_reason(patch: dict, message: str) -> None:
    with pytest.raises(SchemeError) as info:
        scheme_from_dict({**MINIMAL, **patch})
    assert message in str(info.value)
    assert str(info.value).startswith("scheme 't': ")


def test_yaml_errors_carry_the_line() -> None:
    with pytest.raises(SchemeError, match=r"bad\.yaml: line 3, column 1: invalid YAML"):
        scheme_from_yaml("name: x\nsegments: [\n", source="bad.yaml")
    with pytest.raises(SchemeError, match="the file is empty"):
        scheme_from_yaml("", source="empty.yaml")


def test_uncovered_combinations_are_listed() -> None:
    scheme = scheme_from_dict({"name": "gap", "segments": [{"name": "Hi", "when": "r_score >= 3"}]})
    coverage = check_coverage(scheme)
    assert not coverage.complete
    assert len(coverage.uncovered) == 2 * 5 * 5
    assert "111" in coverage.uncovered and "311" not in coverage.uncovered
    assert "match no segment" in coverage.messages()[0]


def test_shadowed_segments_are_reported() -> None:
    scheme = scheme_from_dict(
        {"name": "s", "segments": [{"name": "All", "when": True}, {"name": "Never", "when": "r_score == 5"}]}
    )
    assert check_coverage(scheme).never_matching == ["Never"]


def test_unknown_scheme_names_list_the_builtins() -> None:
    with pytest.raises(SchemeError, match="built-in schemes: crm"):
        load_scheme("nope")


def test_a_key_given_twice_is_an_error_not_a_silent_override() -> None:
    with pytest.raises(SchemeError, match=r"line 4, column 1: invalid YAML: the key 'name' is given twice"):
        scheme_from_yaml("name: x\nsegments:\n  - {name: A, when: true}\nname: y\n", source="dup.yaml")

import doctest

import pytest

import rfmflow.testing
from rfmflow.core.scheme import scheme_from_dict


def test_the_documented_example_runs() -> None:
    failures, tried = doctest.testmod(rfmflow.testing, raise_on_error=False)
    assert tried >= 5 and failures == 0


def test_assert_covers_every_combination_fails_on_gaps() -> None:
    gap = scheme_from_dict({"name": "gap", "segments": [{"name": "Top", "when": "r_score == 5"}]})
    with pytest.raises(AssertionError, match="match no segment"):
        rfmflow.testing.assert_covers_every_combination(gap)

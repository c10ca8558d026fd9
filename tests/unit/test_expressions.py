from __future__ import annotations

import duckdb
import pytest
from sqlglot import exp

from rfmflow.core.errors import ExpressionError
from rfmflow.core.expressions import parse_expression

NAMES = ["r_score", "f_score", "m_score", "recency_days", "monetary", "segment"]


def _sql(text: str, row: dict[str, object]) -> object:
    """Evaluate through DuckDB with the row as a one-line table: the compiled SQL's meaning."""
    expr = parse_expression(text, allowed=NAMES, text_names=["segment"])
    sql = expr.to_sql(lambda n: exp.column(n, quoted=True)).sql(dialect="duckdb")
    con = duckdb.connect()
    cols = ", ".join(
        f'CAST(? AS {"VARCHAR" if isinstance(v, str) else "DOUBLE"}) AS "{k}"' for k, v in row.items()
    )
    value = con.execute(f"SELECT {sql} FROM (SELECT {cols})", list(row.values())).fetchone()
    con.close()
    return None if value is None else value[0]


ROW = {
    "r_score": 4.0,
    "f_score": 2.0,
    "m_score": 5.0,
    "recency_days": 12.0,
    "monetary": 0.0,
    "segment": "Top",
}


@pytest.mark.parametrize(
    "text",
    [
        "r_score >= 4 and f_score >= 4",
        "r_score >= 4 or f_score >= 4",
        "not r_score == 4",
        "1 <= f_score <= 3",
        "r_score in (1, 4)",
        "r_score not in (1, 4)",
        "recency_days / monetary > 1",
        "recency_days / 4 == 3",
        "-r_score < -3",
        "r_score + f_score * 2 == 8",
        "segment == 'Top'",
        "True",
        "recency_days is None",
        "recency_days is not None",
        "(r_score >= 4) == (f_score >= 4)",
        "(r_score >= 4) != False",
        "(r_score >= 4) in (True,)",
        "not (r_score >= 4) == (f_score >= 4)",
    ],
)
def test_python_evaluation_and_sql_agree(text: str) -> None:
    expr = parse_expression(text, allowed=NAMES, text_names=["segment"])
    python = expr.evaluate(ROW)
    sql = _sql(text, ROW)
    if isinstance(python, bool) or python is None:
        assert python == (None if sql is None else bool(sql))
    else:
        assert python == sql


def test_unknown_values_are_unknown_not_false() -> None:
    expr = parse_expression("r_score >= 4 and recency_days <= 30", allowed=NAMES)
    assert expr.matches({"r_score": 5}) is None
    assert expr.matches({"r_score": 2}) is False
    assert parse_expression("recency_days is None", allowed=NAMES).matches({}) is None


def test_names_are_reported() -> None:
    assert parse_expression("r_score > f_score or m_score == 1", allowed=NAMES).names == {
        "r_score",
        "f_score",
        "m_score",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("r_scor >= 4", "unknown name 'r_scor'; did you mean 'r_score'?"),
        ("r_score >=", "cannot parse"),
        ("__import__('os')", "function calls are not allowed"),
        ("r_score.real > 1", "attribute access is not allowed"),
        ("r_score in f_score", "'in' needs a non-empty tuple or list of constants"),
        ("r_score is 4", "'is' may only compare with None"),
        ("r_score = 4", "cannot parse"),
        ("true", "write True, False or None"),
        ("[1][0] == 1", "subscripts are not allowed"),
        ("", "expected a rule expression"),
        ("segment + 1 > 2", "arithmetic needs numbers"),
        ("segment > 5", "cannot compare text with num"),
        ("r_score", "a rule must be a condition"),
        ("r_score > 1 and f_score", "this is not a condition"),
        ("r_score == None", "compare with None using 'is None'"),
        ("segment in (1, 2)", "cannot compare text with num"),
        ("r_score in (1, None)", "None cannot be in an 'in' list"),
    ],
)
def test_bad_expressions_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=None) as info:
        parse_expression(text, allowed=NAMES, where="segments[0].when", text_names=["segment"])
    assert message in str(info.value)
    assert str(info.value).startswith("segments[0].when: ")

"""The ``rfmflow`` command line: exit codes, what goes to stdout and stderr, and files written."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from rfmflow.cli.main import main
from rfmflow.schemes import builtin_names, builtin_text

BASE = (
    "customer_id,order_date,amount\n"
    "c1,2024-01-01,20.00\n"
    "c1,2024-01-10,-5\n"
    "c2,2024-01-05,30.50\n"
    "c2,2024-01-08,10\n"
    "c3,2024-01-09,7.25\n"
)
#: As of 2024-01-11 (the day after the last event): (recency_days, frequency, monetary).
EXPECTED = {"c1": (10, 1, Decimal("15.00")), "c2": (3, 2, Decimal("40.50")), "c3": (2, 1, Decimal("7.25"))}
SEGMENTS = {"c1": "Lost", "c2": "Can't Lose Them", "c3": "New"}
COLUMNS = [
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "rfm",
    "segment",
    "tenure_days",
]
BAD = (
    "customer_id,order_date,amount\n"  # 1
    "c1,2024-01-01,20\n"  # 2
    "c2,2024-01-02,abc\n"  # 3: non-numeric amount
    "c3,2024-01-03,1,x\n"  # 4: wrong number of fields
    "c3,2024-01-04,2\n"  # 5
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(BASE, encoding="utf-8")
    return path


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_fails(result: Result, *fragments: str, code: int = 1) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    if code == 1:
        assert result.stderr.startswith("error: "), result.stderr
        assert isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stdout + result.stderr


# --- score -------------------------------------------------------------------------------


def test_score_prints_tables_and_the_default_as_of(base: Path) -> None:
    result = run("score", base)
    assert_ok(result)
    assert "3 customers scored with rfm11 v1 as of 2024-01-11" in result.stdout
    for segment in SEGMENTS.values():
        assert segment in result.stdout
    assert "as-of date: 2024-01-11 (default: the day after the last event); time zone UTC" in result.stderr
    assert "read 5 rows from" in result.stderr
    assert "use -o scores.csv" in result.stderr


def test_score_given_as_of_is_printed_as_given(base: Path) -> None:
    result = run("score", base, "--as-of", "2024-01-31")
    assert_ok(result)
    assert "as-of date: 2024-01-31 (given)" in result.stderr


def test_score_to_csv(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "scores.csv"
    result = run("score", base, "-o", out)
    assert_ok(result)
    assert f"wrote 3 customers to {out}" in result.stderr
    with out.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    metrics = {
        r["customer_id"]: (int(r["recency_days"]), int(r["frequency"]), Decimal(r["monetary"])) for r in rows
    }
    assert metrics == EXPECTED
    assert [r["monetary"] for r in rows] == ["15.00", "40.50", "7.25"]
    assert {r["customer_id"]: r["segment"] for r in rows} == SEGMENTS
    assert {r["customer_id"]: r["rfm"] for r in rows} == {"c1": "112", "c2": "255", "c3": "511"}
    assert not list(out.parent.glob("*.tmp"))


def test_score_to_parquet(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    assert_ok(run("score", base, "--output", out))
    table = pq.read_table(out)
    assert table.column_names == COLUMNS
    rows = table.to_pylist()
    assert {r["customer_id"]: (r["recency_days"], r["frequency"], r["monetary"]) for r in rows} == EXPECTED
    assert {r["customer_id"]: r["segment"] for r in rows} == SEGMENTS


def test_score_to_json(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    assert_ok(run("score", base, "-o", out))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert [list(r) for r in rows] == [COLUMNS] * 3
    assert {
        r["customer_id"]: (r["recency_days"], r["frequency"], Decimal(str(r["monetary"]))) for r in rows
    } == EXPECTED
    assert {r["customer_id"]: r["segment"] for r in rows} == SEGMENTS


def test_score_json_summary(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    result = run("score", base, "--json", "-o", out)
    assert_ok(result)
    summary = json.loads(result.stdout)
    assert summary["as_of"] == "2024-01-11"
    assert summary["as_of_is_default"] is True
    assert summary["scheme"] == {"name": "rfm11", "version": 1}
    assert summary["customers"] == 3
    assert summary["timezone"] == "UTC"
    assert summary["output"] == str(out)
    assert summary["input"]["rows_read"] == 5
    assert summary["input"]["rows_rejected"] == 0
    assert summary["input"]["first_day"] == "2024-01-01"
    assert summary["input"]["last_day"] == "2024-01-10"
    assert summary["input"]["columns"] == {
        "customer": "customer_id",
        "date": "order_date",
        "amount": "amount",
    }
    by_segment = {s["segment"]: s for s in summary["segments"]}
    assert {name: s["customers"] for name, s in by_segment.items() if s["customers"]} == {
        "Lost": 1,
        "Can't Lose Them": 1,
        "New": 1,
    }
    assert by_segment["Can't Lose Them"]["revenue"] == "40.50"
    assert set(summary["thresholds"]) == {"recency", "frequency", "monetary"}
    assert out.exists()


def test_score_json_summary_counts_rejects(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD, encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    result = run("score", path, "--json", "--rejects", rejects)
    assert_ok(result)
    summary = json.loads(result.stdout)
    assert summary["input"]["rows_rejected"] == 2
    assert summary["input"]["rejects_path"] == str(rejects)
    with rejects.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["line", "reason", "raw"]
    assert [r[:2] for r in rows[1:]] == [
        ["3", "non-numeric amount 'abc'"],
        ["4", "wrong number of fields: expected 3, got 4"],
    ]


def test_score_table_output_mentions_rejects(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD, encoding="utf-8")
    result = run("score", path, "--rejects", tmp_path / "r.csv")
    assert_ok(result)
    assert "2 rows rejected" in result.stderr
    assert "r.csv" in result.stderr


def test_score_options(tmp_path: Path) -> None:
    path = tmp_path / "events.txt"
    path.write_text(
        "buyer;when;paid;kind\n"
        "a;2024-03-01T23:30:00Z;12,50;purchase\n"
        "a;2024-02-28T12:00:00Z;1,00;message\n"
        "b;2024-02-28T12:00:00Z;5,00;purchase\n",
        encoding="utf-8",
    )
    out = tmp_path / "s.csv"
    result = run(
        "score", path, "--customer-col", "buyer", "--date-col", "when", "--amount-col", "paid",
        "--type-col", "kind", "--event-type", "purchase", "--decimal-comma", "--tz", "Europe/Berlin",
        "--scheme", "crm", "-o", out, "--json",
    )  # fmt: skip
    assert_ok(result)
    summary = json.loads(result.stdout)
    # Berlin: a's purchase is on 2024-03-02, so as of 2024-03-03.
    assert summary["as_of"] == "2024-03-03"
    assert summary["timezone"] == "Europe/Berlin"
    assert summary["scheme"]["name"] == "crm"
    assert "only events of type purchase were used" in summary["notes"]
    with out.open(newline="", encoding="utf-8") as fh:
        rows = {r["customer_id"]: r for r in csv.DictReader(fh)}
    assert {c: (r["recency_days"], r["frequency"], r["monetary"]) for c, r in rows.items()} == {
        "a": ("1", "1", "12.50"),
        "b": ("4", "1", "5.00"),
    }
    assert "tags" in next(iter(rows.values()))


def test_score_whitespace_file_without_header(tmp_path: Path) -> None:
    path = tmp_path / "sample.txt"
    path.write_text("00001 19970101 1 11.77\n00002 19970112 1 12.00\n", encoding="utf-8")
    # Five names for four fields: every row has the wrong width.
    result = run("score", path, "--no-header", "--columns", "customer_id,sample,date,cds,dollar_value")
    assert_fails(
        result, "no valid rows to score (2 rejected", "line 1: wrong number of fields: expected 5, got 4"
    )
    result = run("score", path, "--no-header", "--columns", "customer_id, date, cds, dollar_value", "--json")
    assert_ok(result)
    summary = json.loads(result.stdout)
    assert summary["customers"] == 2
    assert summary["as_of"] == "1997-01-13"


def test_score_config_file(base: Path, tmp_path: Path) -> None:
    scheme = tmp_path / "two.yaml"
    scheme.write_text(
        "name: two\nscores: {recency: {edges: [5]}, frequency: {edges: [1]}, monetary: null}\n"
        "segments:\n  - {name: Fresh, when: r_score == 2}\n  - {name: Stale, when: true}\n",
        encoding="utf-8",
    )
    out = tmp_path / "s.csv"
    assert_ok(run("score", base, "--config", scheme, "-o", out))
    with out.open(newline="", encoding="utf-8") as fh:
        assert {r["customer_id"]: r["segment"] for r in csv.DictReader(fh)} == {
            "c1": "Stale",
            "c2": "Fresh",
            "c3": "Fresh",
        }


# --- score errors ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert_fails(run("score", tmp_path / "nope.csv"), "nope.csv: no such file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    out = tmp_path / "s.csv"
    assert_fails(run("score", path, "-o", out), "the file is empty")
    assert not out.exists()


def test_no_recognisable_columns(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("[foo],bar,baz\n1,2,3\n", encoding="utf-8")
    assert_fails(
        run("score", path),
        "no recognisable customer",
        "the file has: [foo], bar, baz",
        "--customer-col NAME, --date-col NAME",
    )


def test_override_naming_a_missing_column(base: Path) -> None:
    assert_fails(
        run("score", base, "--amount-col", "net"),
        "--amount-col 'net': no such column; the file has: customer_id, order_date, amount",
    )


def test_unknown_scheme(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    assert_fails(run("score", base, "--scheme", "nope", "-o", out), "unknown scheme 'nope'", "rfm11")
    assert not out.exists()


def test_missing_config_file(base: Path) -> None:
    assert_fails(run("score", base, "--config", "missing.yaml"), "scheme file missing.yaml: no such file")


def test_scheme_and_config_together_is_a_usage_error(base: Path) -> None:
    result = run("score", base, "--scheme", "rfm11", "--config", "x.yaml")
    assert_fails(result, "give --scheme or --config, not both", code=2)


def test_unknown_time_zone(base: Path) -> None:
    assert_fails(run("score", base, "--tz", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'", code=2)


@pytest.mark.parametrize("value", ["2024-13-01", "yesterday", "01/02/2024"])
def test_bad_as_of_is_a_usage_error(base: Path, value: str) -> None:
    assert_fails(run("score", base, "--as-of", value), "--as-of", code=2)


def test_events_after_the_as_of(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    assert_fails(
        run("score", base, "--as-of", "2024-01-05", "-o", out),
        "3 events are after the as-of date 2024-01-05",
        "--drop-after-as-of",
    )
    assert not out.exists()
    assert_ok(run("score", base, "--as-of", "2024-01-05", "--drop-after-as-of", "-o", out))
    with out.open(newline="", encoding="utf-8") as fh:
        assert {r["customer_id"]: r["recency_days"] for r in csv.DictReader(fh)} == {"c1": "4", "c2": "0"}


def test_strict_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD, encoding="utf-8")
    out = tmp_path / "s.csv"
    result = run("score", path, "--strict", "-o", out)
    assert_fails(result, "line 3: non-numeric amount 'abc'")
    assert not out.exists()
    assert not list(tmp_path.glob("*.rejects.csv"))


def test_unknown_output_format_writes_nothing(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.xlsx"
    assert_fails(run("score", base, "-o", out), "unknown format '.xlsx'", code=2)
    assert not out.exists()
    assert not list(tmp_path.glob("s.xlsx*"))


def test_unknown_option_is_a_usage_error(base: Path) -> None:
    result = run("score", base, "--frobnicate")
    assert result.exit_code == 2
    assert "No such option" in result.stderr


# --- report ------------------------------------------------------------------------------


def test_report_writes_html(base: Path, tmp_path: Path) -> None:
    html = tmp_path / "reports" / "rfm.html"
    out = tmp_path / "scores.csv"
    result = run("report", base, "--html", html, "-o", out)
    assert_ok(result)
    text = html.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html")
    assert "rfm11" in text
    for segment in SEGMENTS.values():
        assert segment.replace("'", "&#39;") in text  # Jinja escapes quotes: Can&#39;t
    assert f"wrote the report to {html}" in result.stderr
    assert out.exists()
    assert not list(html.parent.glob("*.tmp"))


def test_report_error_writes_no_html(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    html = tmp_path / "r.html"
    assert_fails(run("report", empty, "--html", html), "the file is empty")
    assert not html.exists()


def test_report_needs_html(base: Path) -> None:
    assert_fails(run("report", base), "--html", code=2)


# --- scheme ------------------------------------------------------------------------------


def test_scheme_list() -> None:
    result = run("scheme", "list")
    assert_ok(result)
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert names == builtin_names()
    assert "rfm11" in names and "crm" in names
    rfm11 = next(line for line in result.stdout.splitlines() if line.startswith("rfm11"))
    assert "eleven-segment" in rfm11


def test_scheme_show() -> None:
    result = run("scheme", "show", "rfm11")
    assert_ok(result)
    assert result.stdout == builtin_text("rfm11")
    assert "name: rfm11" in result.stdout


def test_scheme_show_unknown() -> None:
    assert_fails(run("scheme", "show", "nope"), "unknown scheme 'nope'; built-in schemes:")


@pytest.mark.parametrize("name", ["rfm11", "crm"])
def test_scheme_check_builtin(name: str) -> None:
    result = run("scheme", "check", name)
    assert_ok(result)
    assert "ok: all 125 score combinations land in exactly one segment" in result.stderr
    assert "problem" not in result.stderr


def test_scheme_check_json() -> None:
    result = run("scheme", "check", "rfm11", "--json")
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report["scheme"] == "rfm11"
    assert report["valid"] is True
    assert report["complete"] is True
    assert report["combinations"] == 125
    assert report["uncovered"] == []


def test_scheme_check_a_shown_scheme_round_trips(tmp_path: Path) -> None:
    copy = tmp_path / "mine.yaml"
    copy.write_text(run("scheme", "show", "crm").stdout, encoding="utf-8")
    assert_ok(run("scheme", "check", copy))


def test_scheme_check_unknown_field_suggests_the_right_one(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\nsegments:\n  - {name: Everyone, wen: 'true'}\n", encoding="utf-8")
    result = run("scheme", "check", path)
    assert_fails(result, "scheme 'typo'", "segments[0]", "unknown field (did you mean 'when'?)")
    assert result.stdout == ""


def test_scheme_check_unknown_top_level_field(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\nsegmens:\n  - {name: Everyone, when: true}\n", encoding="utf-8")
    assert_fails(run("scheme", "check", path), "segmens: unknown field (did you mean 'segments'?)")


def test_scheme_check_expression_with_an_unknown_name(tmp_path: Path) -> None:
    path = tmp_path / "expr.yaml"
    path.write_text(
        "name: expr\nsegments:\n  - {name: Best, when: r_scor >= 4}\n  - {name: Rest, when: true}\n",
        encoding="utf-8",
    )
    assert_fails(
        run("scheme", "check", path),
        "scheme 'expr': segments[0] (Best).when",
        "unknown name 'r_scor'",
        "did you mean 'r_score'?",
    )


def test_scheme_check_bad_expression_syntax(tmp_path: Path) -> None:
    path = tmp_path / "syntax.yaml"
    path.write_text(
        "name: syntax\nsegments:\n  - {name: Best, when: 'r_score >= '}\n  - {name: Rest, when: true}\n",
        encoding="utf-8",
    )
    assert_fails(run("scheme", "check", path), "segments[0] (Best).when")


def test_scheme_check_disallowed_expression(tmp_path: Path) -> None:
    path = tmp_path / "call.yaml"
    path.write_text(
        "name: call\nsegments:\n  - {name: Best, when: \"__import__('os')\"}\n  - {name: Rest, when: true}\n",
        encoding="utf-8",
    )
    assert_fails(run("scheme", "check", path), "segments[0] (Best).when")


def test_scheme_check_uncovered_combinations(tmp_path: Path) -> None:
    path = tmp_path / "gaps.yaml"
    path.write_text("name: gaps\nsegments:\n  - {name: Best, when: r_score == 5}\n", encoding="utf-8")
    result = run("scheme", "check", path)
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "100 of 125 score combinations match no segment" in result.stderr
    assert "when: true" in result.stderr
    assert "ok:" not in result.stderr
    assert "Best" in result.stdout
    as_json = run("scheme", "check", path, "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["complete"] is False
    assert len(report["uncovered"]) == 100
    assert "111" in report["uncovered"] and "511" not in report["uncovered"]


def test_scheme_check_data_dependent_coverage(tmp_path: Path) -> None:
    path = tmp_path / "days.yaml"
    path.write_text("name: days\nsegments:\n  - {name: Recent, when: recency_days <= 30}\n", encoding="utf-8")
    result = run("scheme", "check", path)
    assert result.exit_code == 1
    assert "depending on raw metrics" in result.stderr


def test_scheme_check_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nsegments: [\n", encoding="utf-8")
    assert_fails(run("scheme", "check", path), "invalid YAML")


def test_scheme_check_missing_file(tmp_path: Path) -> None:
    assert_fails(run("scheme", "check", tmp_path / "nope.yaml"), "no such file")


def test_scheme_check_unknown_name() -> None:
    assert_fails(run("scheme", "check", "nope"), "unknown scheme 'nope'")

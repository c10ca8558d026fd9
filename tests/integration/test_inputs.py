"""Reading real-world input through ``rfmflow.score``: formats, columns, options and bad rows.

Every test builds a tiny file whose recency, frequency and monetary values are worked out by
hand in the test, so a failure points at the reading or the scoring, never at the data.
"""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rfmflow
from rfmflow import InputError, RejectedRowError, SchemeError

D = Decimal

#: The base events: a purchase and a refund for c1, two purchases for c2, one for c3.
BASE_ROWS = [
    ("customer_id", "order_date", "amount"),
    ("c1", "2024-01-01", "20.00"),
    ("c1", "2024-01-10", "-5"),
    ("c2", "2024-01-05", "30.50"),
    ("c2", "2024-01-08", "10"),
    ("c3", "2024-01-09", "7.25"),
]
#: As of 2024-01-11 (the day after the last event, the refund on 2024-01-10):
#: c1 last purchased 2024-01-01 -> 10 days; one purchase; 20.00 - 5.00 = 15.00
#: c2 last purchased 2024-01-08 -> 3 days; two purchases; 30.50 + 10.00 = 40.50
#: c3 last purchased 2024-01-09 -> 2 days; one purchase; 7.25
BASE_AS_OF = date(2024, 1, 11)
BASE_EXPECTED = {
    "c1": (10, 1, D("15.00")),
    "c2": (3, 2, D("40.50")),
    "c3": (2, 1, D("7.25")),
}
STANDARD_COLUMNS = [
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


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path so that a default rejects file never lands in the repository."""
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def delimited(rows: list[tuple[str, ...]], delimiter: str = ",", newline: str = "\n") -> str:
    return "".join(delimiter.join(row) + newline for row in rows)


def rfm(result: rfmflow.ScoreResult) -> dict[str, tuple[Any, Any, Any]]:
    """customer_id -> (recency_days, frequency, monetary)."""
    return {
        r["customer_id"]: (r["recency_days"], r["frequency"], r["monetary"])
        for r in result.customers.to_pylist()
    }


def read_rejects(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def assert_base(result: rfmflow.ScoreResult) -> None:
    assert rfm(result) == BASE_EXPECTED
    assert result.as_of == BASE_AS_OF
    assert result.as_of_is_default
    assert result.input.rows_rejected == 0


# --- CSV dialects ------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_every_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    path = write(tmp_path / "events.csv", delimited(BASE_ROWS, delimiter))
    result = rfmflow.score(path)
    assert_base(result)
    assert result.input.rows_read == 5
    assert result.input.columns == {"customer": "customer_id", "date": "order_date", "amount": "amount"}


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_every_delimiter_can_be_given(tmp_path: Path, delimiter: str) -> None:
    path = write(tmp_path / "events.txt", delimited(BASE_ROWS, delimiter))
    given = "tab" if delimiter == "\t" else delimiter
    assert_base(rfmflow.score(path, delimiter=given))


def test_tsv_suffix(tmp_path: Path) -> None:
    assert_base(rfmflow.score(write(tmp_path / "events.tsv", delimited(BASE_ROWS, "\t"))))


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.csv", delimited(BASE_ROWS), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    result = rfmflow.score(path)
    assert_base(result)
    assert result.input.columns["customer"] == "customer_id"


def test_excel_export_bom_semicolons_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "excel.csv", delimited(BASE_ROWS, ";", "\r\n"), encoding="utf-8-sig")
    assert_base(rfmflow.score(path))


def test_non_ascii_customer_ids(tmp_path: Path) -> None:
    rows = [
        ("customer_id", "order_date", "amount"),
        ("Zoë Müller", "2024-01-01", "5"),
        ("渡辺", "2024-01-02", "6"),
    ]
    result = rfmflow.score(write(tmp_path / "names.csv", delimited(rows)))
    assert rfm(result) == {"Zoë Müller": (2, 1, D("5.00")), "渡辺": (1, 1, D("6.00"))}


def test_quoted_fields_with_delimiter_and_newline_keep_physical_line_numbers(tmp_path: Path) -> None:
    text = (
        "customer_id,order_date,amount,note\n"  # line 1
        '"Smith, J",2024-01-01,"1,234.50","first order,\n'  # line 2
        'gift wrapped"\n'  # line 3 (still the record of line 2)
        'c2,2024-01-05,30.50,"said ""hi"""\n'  # line 4
        "c3,2024-01-06,oops,bad amount\n"  # line 5: rejected
        '"multi\n'  # line 6: a record spanning lines 6-7 with too few fields
        'line",2024-01-07\n'  # line 7
        "c4,2024-01-07,2.00,ok\n"  # line 8
    )
    rejects = tmp_path / "rejects.csv"
    result = rfmflow.score(write(tmp_path / "quoted.csv", text), rejects_path=rejects)
    # As of 2024-01-08: Smith 7 days, c2 3 days, c4 1 day.
    assert rfm(result) == {
        "Smith, J": (7, 1, D("1234.50")),
        "c2": (3, 1, D("30.50")),
        "c4": (1, 1, D("2.00")),
    }
    assert result.as_of == date(2024, 1, 8)
    assert result.input.rows_read == 5
    assert result.input.rows_rejected == 2
    header, rows = read_rejects(rejects)
    assert header == ["line", "reason", "raw"]
    assert [r[:2] for r in rows] == [
        ["5", "non-numeric amount 'oops'"],
        ["6", "wrong number of fields: expected 4, got 2"],
    ]
    assert "oops" in rows[0][2]


def test_semicolons_with_quoted_newlines_and_decimal_commas_are_sniffed(tmp_path: Path) -> None:
    text = (
        "customer_id;order_date;amount;note\n"  # line 1
        'c1;2024-01-01;5,25;"two\n'  # line 2
        'lines"\n'  # line 3
        'c2;2024-01-02;6;"a;b"\n'  # line 4
        "c3;2024-01-03;x;z\n"  # line 5: rejected
        "c3;2024-01-03;1.234,5;z\n"  # line 6
    )
    rejects = tmp_path / "r.csv"
    result = rfmflow.score(write(tmp_path / "semi.csv", text), decimal_comma=True, rejects_path=rejects)
    # As of 2024-01-04.
    assert rfm(result) == {"c1": (3, 1, D("5.25")), "c2": (2, 1, D("6.00")), "c3": (1, 1, D("1234.50"))}
    _, rows = read_rejects(rejects)
    assert [r[:2] for r in rows] == [["5", "non-numeric amount 'x'"]]


def test_gzipped_csv(tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(delimited(BASE_ROWS, ";").encode()))
    assert_base(rfmflow.score(path))


def test_quoted_newline_line_numbers_in_strict_mode(tmp_path: Path) -> None:
    text = 'customer_id,order_date,amount,note\nc1,2024-01-01,5,"two\nlines"\nc2,2024-01-02,x,\n'
    with pytest.raises(RejectedRowError) as info:
        rfmflow.score(write(tmp_path / "q.csv", text), strict=True)
    assert info.value.line == 4
    assert info.value.reason == "non-numeric amount 'x'"
    assert "line 4" in str(info.value)


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    text = "customer_id,order_date,amount\n\nc1,2024-01-01,5\n\n\nc1,2024-01-02,zz\n"
    rejects = tmp_path / "r.csv"
    result = rfmflow.score(write(tmp_path / "blank.csv", text), rejects_path=rejects)
    assert rfm(result) == {"c1": (1, 1, D("5.00"))}
    _, rows = read_rejects(rejects)
    assert [r[:2] for r in rows] == [["6", "non-numeric amount 'zz'"]]


# --- numbers -----------------------------------------------------------------------------


def test_decimal_comma(tmp_path: Path) -> None:
    rows = [
        ("customer_id", "order_date", "amount"),
        ("c1", "2024-01-01", "20,00"),
        ("c1", "2024-01-10", "-5,00"),
        ("c2", "2024-01-05", "1.234,50"),
        ("c2", "2024-01-08", "10"),
        ("c3", "2024-01-09", "7,25"),
    ]
    result = rfmflow.score(write(tmp_path / "de.csv", delimited(rows, ";")), decimal_comma=True)
    assert rfm(result) == {
        "c1": (10, 1, D("15.00")),
        "c2": (3, 2, D("1244.50")),
        "c3": (2, 1, D("7.25")),
    }
    assert result.input.rows_rejected == 0


def test_decimal_comma_values_without_the_option_are_rejected_not_misread(tmp_path: Path) -> None:
    rows = [
        ("customer_id", "order_date", "amount"),
        ("c1", "2024-01-01", "20,50"),
        ("c2", "2024-01-02", "10"),
    ]
    rejects = tmp_path / "r.csv"
    result = rfmflow.score(write(tmp_path / "de.csv", delimited(rows, ";")), rejects_path=rejects)
    assert rfm(result) == {"c2": (1, 1, D("10.00"))}
    _, bad = read_rejects(rejects)
    assert [r[:2] for r in bad] == [
        ["2", "non-numeric amount '20,50' (a decimal comma? pass --decimal-comma)"]
    ]


def test_thousands_separators_and_currency_symbols(tmp_path: Path) -> None:
    text = (
        "customer_id,order_date,amount\n"
        'c1,2024-01-01,"1,234.50"\n'
        "c1,2024-01-02,$12.50\n"
        'c2,2024-01-03,"£1,000.00"\n'
        "c2,2024-01-04,-$5.00\n"
        "c3,2024-01-05,€ 3.10\n"
        'c3,2024-01-06," 2 "\n'
    )
    result = rfmflow.score(write(tmp_path / "money.csv", text))
    # As of 2024-01-07. c2's -5.00 is a refund: one purchase, 995.00 net.
    assert rfm(result) == {
        "c1": (5, 2, D("1247.00")),
        "c2": (4, 1, D("995.00")),
        "c3": (1, 2, D("5.10")),
    }
    assert result.input.rows_rejected == 0


def test_money_decimals(tmp_path: Path) -> None:
    rows = [
        ("customer_id", "order_date", "amount"),
        ("c1", "2024-01-01", "1500"),
        ("c1", "2024-01-02", "250.4"),
    ]
    result = rfmflow.score(write(tmp_path / "jpy.csv", delimited(rows)), money_decimals=0)
    assert rfm(result) == {"c1": (1, 2, D("1750"))}


# --- Parquet -----------------------------------------------------------------------------


def _base_arrow(date_array: pa.Array) -> pa.Table:
    return pa.table(
        {
            "customer_id": ["c1", "c1", "c2", "c2", "c3"],
            "order_date": date_array,
            "amount": pa.array([20.0, -5.0, 30.5, 10.0, 7.25], type=pa.float64()),
        }
    )


BASE_DATES = [date.fromisoformat(r[1]) for r in BASE_ROWS[1:]]


@pytest.mark.parametrize(
    "date_array",
    [
        pa.array([datetime(d.year, d.month, d.day, 12, 30) for d in BASE_DATES], type=pa.timestamp("us")),
        pa.array([datetime(d.year, d.month, d.day, 9) for d in BASE_DATES], type=pa.timestamp("ns")),
        pa.array(BASE_DATES, type=pa.date32()),
        pa.array([d.isoformat() for d in BASE_DATES], type=pa.string()),
    ],
    ids=["timestamp-us", "timestamp-ns", "date32", "string"],
)
def test_parquet(tmp_path: Path, date_array: pa.Array) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(_base_arrow(date_array), path)
    result = rfmflow.score(path)
    assert_base(result)
    assert result.input.rows_read == 5


def test_parquet_decimal_amounts_and_integer_ids(tmp_path: Path) -> None:
    table = pa.table(
        {
            "CustomerID": pa.array([1, 1, 2], type=pa.int64()),
            "InvoiceDate": pa.array([date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 2)], type=pa.date32()),
            "revenue": pa.array([D("0.10"), D("0.20"), D("99.99")], type=pa.decimal128(10, 2)),
        }
    )
    path = tmp_path / "dec.parquet"
    pq.write_table(table, path)
    result = rfmflow.score(path)
    assert rfm(result) == {"1": (1, 2, D("0.30")), "2": (1, 1, D("99.99"))}


def test_parquet_timezone_aware_timestamps_use_the_business_time_zone(tmp_path: Path) -> None:
    table = pa.table(
        {
            "user_id": ["a", "b"],
            "created_at": pa.array(
                [datetime(2024, 3, 1, 23, 30, tzinfo=UTC), datetime(2024, 2, 28, 12, tzinfo=UTC)],
                type=pa.timestamp("us", tz="UTC"),
            ),
            "total": [10.0, 5.0],
        }
    )
    path = tmp_path / "tz.parquet"
    pq.write_table(table, path)
    utc = rfmflow.score(path)
    assert utc.as_of == date(2024, 3, 2)
    assert rfm(utc) == {"a": (1, 1, D("10.00")), "b": (3, 1, D("5.00"))}
    berlin = rfmflow.score(path, timezone="Europe/Berlin")
    assert berlin.input.last_day == date(2024, 3, 2)
    assert berlin.as_of == date(2024, 3, 3)
    assert rfm(berlin) == {"a": (1, 1, D("10.00")), "b": (4, 1, D("5.00"))}


def test_parquet_bad_rows_are_rejected_with_their_row_number(tmp_path: Path) -> None:
    table = pa.table(
        {
            "customer_id": ["c1", None, "c2", "c3"],
            "order_date": pa.array(
                [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3), None], type=pa.date32()
            ),
            "amount": pa.array([1.5, 2.0, None, 4.0]),
        }
    )
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    rejects = tmp_path / "rejects.csv"
    result = rfmflow.score(path, rejects_path=rejects)
    assert rfm(result) == {"c1": (1, 1, D("1.50"))}
    assert result.input.rows_read == 4
    assert result.input.rows_rejected == 3
    header, rows = read_rejects(rejects)
    assert header[1:] == ["reason", "raw"]
    assert [r[:2] for r in rows] == [
        ["2", "missing customer id"],
        ["3", "missing amount"],
        ["4", "missing date"],
    ]


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = write(tmp_path / "fake.parquet", "customer_id,order_date,amount\n")
    with pytest.raises(InputError, match="cannot read as Parquet"):
        rfmflow.score(path)


# --- JSON --------------------------------------------------------------------------------


def test_json_lines_with_a_broken_line(tmp_path: Path) -> None:
    lines = [
        '{"customer_id": "c1", "order_date": "2024-01-01", "amount": 20}',  # 1
        '{"customer_id": "c1", "order_date": "2024-01-10", "amount": -5}',  # 2
        '{"customer_id": "c2", "order_date": "2024-01-05", "amount": 30.5}',  # 3
        '{"customer_id": "c2", "order_date": "2024-01-07", "amount": 99',  # 4: broken
        "",  # 5: blank
        '{"customer_id": "c2", "order_date": "2024-01-08", "amount": "10"}',  # 6
        '["not", "an", "object"]',  # 7
        '{"customer_id": "c3", "order_date": "2024-01-09", "amount": 7.25, "extra": {"a": 1}}',  # 8
    ]
    rejects = tmp_path / "rejects.csv"
    result = rfmflow.score(write(tmp_path / "events.jsonl", "\n".join(lines) + "\n"), rejects_path=rejects)
    assert rfm(result) == BASE_EXPECTED
    assert result.as_of == BASE_AS_OF
    assert result.input.rows_read == 7
    assert result.input.rows_rejected == 2
    header, rows = read_rejects(rejects)
    assert header == ["line", "reason", "raw"]
    assert [r[0] for r in rows] == ["4", "7"]
    assert rows[0][1].startswith("invalid JSON")
    assert rows[0][2] == lines[3]
    assert rows[1][1] == "not a JSON object"


def test_json_lines_strict_names_the_broken_line(tmp_path: Path) -> None:
    text = '{"customer_id": "c1", "order_date": "2024-01-01", "amount": 1}\n{"customer_id": \n'
    with pytest.raises(RejectedRowError) as info:
        rfmflow.score(write(tmp_path / "e.ndjson", text), strict=True)
    assert info.value.line == 2
    assert "invalid JSON" in info.value.reason


def test_json_array(tmp_path: Path) -> None:
    items = [dict(zip(BASE_ROWS[0], row, strict=True)) for row in BASE_ROWS[1:]]
    for item in items:
        item["amount"] = float(item["amount"])
    path = write(tmp_path / "events.json", json.dumps(items, indent=2))
    assert_base(rfmflow.score(path))


def test_invalid_json_array_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"line 2: invalid JSON"):
        rfmflow.score(write(tmp_path / "bad.json", '[{"customer_id": "c1",\n "x": }]'))


# --- data frames -------------------------------------------------------------------------


def _base_csv(tmp_path: Path) -> rfmflow.ScoreResult:
    return rfmflow.score(write(tmp_path / "base.csv", delimited(BASE_ROWS)))


def _base_dict() -> dict[str, list[Any]]:
    return {
        "customer_id": [r[0] for r in BASE_ROWS[1:]],
        "order_date": [r[1] for r in BASE_ROWS[1:]],
        "amount": [float(r[2]) for r in BASE_ROWS[1:]],
    }


def test_pandas_frame_gives_the_same_rows_as_the_csv(tmp_path: Path) -> None:
    expected = _base_csv(tmp_path)
    df = pd.DataFrame(_base_dict())
    from_strings = rfmflow.score(df)
    df["order_date"] = pd.to_datetime(df["order_date"])
    from_datetimes = rfmflow.score(df)
    for result in (from_strings, from_datetimes):
        assert result.customers.to_pylist() == expected.customers.to_pylist()
        assert result.as_of == expected.as_of
        assert result.input.source == "(data frame)"
    assert rfm(from_datetimes) == BASE_EXPECTED


def test_polars_frame_gives_the_same_rows_as_the_csv(tmp_path: Path) -> None:
    expected = _base_csv(tmp_path)
    df = pl.DataFrame(_base_dict())
    from_strings = rfmflow.score(df)
    from_dates = rfmflow.score(df.with_columns(pl.col("order_date").str.to_date()))
    from_datetimes = rfmflow.score(df.with_columns(pl.col("order_date").str.to_datetime()))
    for result in (from_strings, from_dates, from_datetimes):
        assert result.customers.to_pylist() == expected.customers.to_pylist()
        assert result.as_of == expected.as_of
    assert rfm(from_dates) == BASE_EXPECTED
    assert result.to_polars().shape == (3, len(STANDARD_COLUMNS))


def test_arrow_table_input(tmp_path: Path) -> None:
    assert_base(rfmflow.score(pa.table(_base_dict())))


def test_frame_bad_rows_are_rejected_by_row_number(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", None],
            "order_date": ["2024-01-01", "someday", "2024-01-02"],
            "amount": [1, 2, 3],
        }
    )
    rejects = tmp_path / "r.csv"
    result = rfmflow.score(df, rejects_path=rejects)
    assert rfm(result) == {"c1": (1, 1, D("1.00"))}
    header, rows = read_rejects(rejects)
    assert header == ["row", "reason", "raw"]
    assert [r[:2] for r in rows] == [
        ["2", "unparseable date 'someday' (expected an ISO date such as 2024-03-01)"],
        ["3", "missing customer id"],
    ]


def test_unsupported_data_type() -> None:
    with pytest.raises(InputError, match="cannot score a list"):
        rfmflow.score([("c1", "2024-01-01", 1)])


# --- columns -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer", "when", "amount"),
    [
        ("customer_id", "order_date", "amount"),
        ("user_id", "timestamp", "revenue"),
        ("CustomerID", "InvoiceDate", "total"),
        ("Customer ID", "created_at", "Amount"),
        ("client_id", "Order Date", "sales"),
    ],
)
def test_columns_detected_by_common_names(tmp_path: Path, customer: str, when: str, amount: str) -> None:
    rows = [(customer, "other", when, amount), *[(r[0], "x", r[1], r[2]) for r in BASE_ROWS[1:]]]
    result = rfmflow.score(write(tmp_path / "named.csv", delimited(rows)))
    assert_base(result)
    assert result.input.columns == {"customer": customer, "date": when, "amount": amount}


def test_price_times_quantity_when_there_is_no_total(tmp_path: Path) -> None:
    text = (
        "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
        "536366,71053,2,12/5/2010 10:01,3.39,17850,United Kingdom\n"
        "C536367,71053,-1,12/9/2010 11:00,3.39,17850,United Kingdom\n"
        "536368,22633,3,12/13/2010 9:00,1.85,13047,France\n"
    )
    result = rfmflow.score(write(tmp_path / "retail.csv", text))
    assert result.input.columns == {
        "customer": "CustomerID",
        "date": "InvoiceDate",
        "price": "UnitPrice",
        "quantity": "Quantity",
        "order": "InvoiceNo",
    }
    # As of 2010-12-14. 17850: 6 x 2.55 + 2 x 3.39 - 1 x 3.39 = 18.69, last purchase 12/5.
    assert result.as_of == date(2010, 12, 14)
    assert rfm(result) == {"13047": (1, 1, D("5.55")), "17850": (9, 2, D("18.69"))}
    assert not any("month/day" in n for n in result.notes)  # 12/13/2010 settles the order


def test_a_total_column_wins_over_price_and_quantity(tmp_path: Path) -> None:
    rows = [
        ("customer_id", "order_date", "price", "quantity", "total"),
        ("c1", "2024-01-01", "2.00", "3", "5.00"),  # a discounted line: the total is what was paid
    ]
    result = rfmflow.score(write(tmp_path / "t.csv", delimited(rows)))
    assert result.input.columns == {"customer": "customer_id", "date": "order_date", "amount": "total"}
    assert rfm(result) == {"c1": (1, 1, D("5.00"))}


def test_column_mapping_overrides(tmp_path: Path) -> None:
    rows = [("buyer", "when", "paid", "amount"), *[(r[0], r[1], r[2], "999") for r in BASE_ROWS[1:]]]
    path = write(tmp_path / "custom.csv", delimited(rows))
    with pytest.raises(InputError) as info:
        rfmflow.score(path)
    message = str(info.value)
    assert "no recognisable customer" in message
    assert "buyer, when, paid, amount" in message
    result = rfmflow.score(path, columns={"customer": "buyer", "date": "when", "amount": "paid"})
    assert_base(result)
    assert result.input.columns == {"customer": "buyer", "date": "when", "amount": "paid"}


def test_column_override_naming_a_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path / "base.csv", delimited(BASE_ROWS))
    with pytest.raises(InputError) as info:
        rfmflow.score(path, columns={"amount": "net_amount"})
    assert str(info.value) == (
        "--amount-col 'net_amount': no such column; the file has: customer_id, order_date, amount"
    )
    with pytest.raises(InputError, match="unknown column role 'money'"):
        rfmflow.score(path, columns={"money": "amount"})


def test_no_recognisable_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "odd.csv", "foo,bar,baz\n1,2,3\n")
    with pytest.raises(
        InputError, match=r"no recognisable customer .* and date .* the file has: foo, bar, baz"
    ):
        rfmflow.score(path)


def test_duplicate_header_names(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.csv", "customer_id,order_date,amount,amount\nc1,2024-01-01,1,2\n")
    with pytest.raises(InputError, match="duplicate column names in the header: amount"):
        rfmflow.score(path)


# --- event types, refunds, currencies ---------------------------------------------------

EVENTS = """user_id,created_at,event_type,revenue
u1,2024-02-01,purchase,10
u1,2024-02-03,message,
u1,2024-02-05,refund,4
u2,2024-02-02,Purchase,25
u2,2024-02-06,message,
u3,2024-02-04,message,
"""


def test_event_types_unfiltered(tmp_path: Path) -> None:
    result = rfmflow.score(write(tmp_path / "events.csv", EVENTS))
    assert result.input.columns["type"] == "event_type"
    # As of 2024-02-07. A refund of type 'refund' with a positive amount still reduces M.
    assert rfm(result) == {"u1": (6, 1, D("6.00")), "u2": (5, 1, D("25.00")), "u3": (None, 0, D("0.00"))}


def test_event_type_filter(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", EVENTS)
    money = rfmflow.score(path, event_types=["purchase", "refund"])
    # Messages dropped: as of the day after the refund (2024-02-06); u3 has no events left.
    assert money.as_of == date(2024, 2, 6)
    assert rfm(money) == {"u1": (5, 1, D("6.00")), "u2": (4, 1, D("25.00"))}
    assert "only events of type purchase, refund were used" in money.notes
    purchases = rfmflow.score(path, event_types=["PURCHASE"])
    assert purchases.as_of == date(2024, 2, 3)
    assert rfm(purchases) == {"u1": (2, 1, D("10.00")), "u2": (1, 1, D("25.00"))}
    with pytest.raises(InputError, match="no valid rows of type click"):
        rfmflow.score(path, event_types=["click"])


def test_negative_amounts_are_refunds(tmp_path: Path) -> None:
    rows = [
        ("customer_id", "order_date", "amount"),
        ("c1", "2024-01-01", "20"),
        ("c1", "2024-01-02", "-5"),
        ("c2", "2024-01-01", "10"),
        ("c2", "2024-01-02", "-10"),
    ]
    result = rfmflow.score(write(tmp_path / "refunds.csv", delimited(rows)))
    # Refunds are not purchases: they change neither recency nor frequency.
    assert rfm(result) == {"c1": (2, 1, D("15.00")), "c2": (2, 1, D("0.00"))}


def test_two_currencies_need_the_currency_option(tmp_path: Path) -> None:
    text = (
        "customer_id,order_date,amount,currency\n"
        "c1,2024-01-01,20,USD\n"
        "c1,2024-01-02,30,EUR\n"
        "c2,2024-01-03,5,usd\n"
        "c2,2024-01-04,7,\n"
    )
    path = write(tmp_path / "fx.csv", text)
    with pytest.raises(InputError) as info:
        rfmflow.score(path)
    assert "holds several currencies (EUR, USD)" in str(info.value)
    assert "--currency" in str(info.value)
    rejects = tmp_path / "r.csv"
    result = rfmflow.score(path, currency="usd", rejects_path=rejects)
    assert result.currency == "USD"
    # As of 2024-01-05; a row without a currency is taken as the one scored.
    assert rfm(result) == {"c1": (4, 1, D("20.00")), "c2": (1, 2, D("12.00"))}
    _, rows = read_rejects(rejects)
    assert [r[:2] for r in rows] == [["3", "currency EUR differs from USD"]]


def test_single_currency_is_reported(tmp_path: Path) -> None:
    text = "customer_id,order_date,amount,currency\nc1,2024-01-01,20,eur\n"
    assert rfmflow.score(write(tmp_path / "eur.csv", text)).currency == "EUR"


# --- dates and time zones ----------------------------------------------------------------


def test_time_zone_moves_events_to_the_business_day(tmp_path: Path) -> None:
    text = "customer_id,timestamp,amount\na,2024-03-01T23:30:00Z,10\nb,2024-02-28T12:00:00+00:00,5\n"
    path = write(tmp_path / "tz.csv", text)
    utc = rfmflow.score(path)
    assert utc.input.last_day == date(2024, 3, 1)
    assert utc.as_of == date(2024, 3, 2)
    assert rfm(utc) == {"a": (1, 1, D("10.00")), "b": (3, 1, D("5.00"))}
    berlin = rfmflow.score(path, timezone="Europe/Berlin")
    assert berlin.timezone == "Europe/Berlin"
    assert berlin.input.last_day == date(2024, 3, 2)
    assert berlin.as_of == date(2024, 3, 3)
    assert rfm(berlin) == {"a": (1, 1, D("10.00")), "b": (4, 1, D("5.00"))}
    new_york = rfmflow.score(path, timezone="America/New_York")
    assert new_york.input.last_day == date(2024, 3, 1)


def test_local_timestamps_are_not_shifted(tmp_path: Path) -> None:
    text = "customer_id,timestamp,amount\na,2024-03-01 23:30:00,10\n"
    berlin = rfmflow.score(write(tmp_path / "local.csv", text), timezone="Europe/Berlin")
    assert berlin.input.last_day == date(2024, 3, 1)


def test_unknown_time_zone() -> None:
    with pytest.raises(InputError, match="unknown time zone 'Mars/Olympus'"):
        rfmflow.score("whatever.csv", timezone="Mars/Olympus")


def test_epoch_seconds(tmp_path: Path) -> None:
    # 1709335800 = 2024-03-01T23:30:00Z
    text = "customer_id,timestamp,amount\na,1709335800,10\n"
    result = rfmflow.score(write(tmp_path / "epoch.csv", text), timezone="Europe/Berlin")
    assert result.input.last_day == date(2024, 3, 2)
    assert any("epoch seconds" in n for n in result.notes)


def test_ambiguous_day_month_dates_are_noted(tmp_path: Path) -> None:
    rows = [("customer_id", "order_date", "amount"), ("c1", "03/04/2024", "10"), ("c2", "05/04/2024", "20")]
    path = write(tmp_path / "dm.csv", delimited(rows))
    default = rfmflow.score(path)
    assert default.input.first_day == date(2024, 3, 4)
    assert default.input.last_day == date(2024, 5, 4)
    assert any("month/day" in n and "day/month" in n and "--date-format" in n for n in default.notes), (
        default.notes
    )
    day_first = rfmflow.score(path, date_format="%d/%m/%Y")
    assert day_first.input.last_day == date(2024, 4, 5)
    assert rfm(day_first) == {"c1": (3, 1, D("10.00")), "c2": (1, 1, D("20.00"))}
    assert not any("month/day" in n for n in day_first.notes)


def test_day_first_dates_are_detected_when_unambiguous(tmp_path: Path) -> None:
    rows = [("customer_id", "order_date", "amount"), ("c1", "13.04.2024", "10"), ("c2", "05.04.2024", "20")]
    result = rfmflow.score(write(tmp_path / "dmy.csv", delimited(rows, ";")))
    assert result.input.first_day == date(2024, 4, 5)
    assert result.input.last_day == date(2024, 4, 13)
    assert result.notes == []


def test_unrecognisable_date_format(tmp_path: Path) -> None:
    rows = [("customer_id", "order_date", "amount"), ("c1", "soon", "10"), ("c2", "later", "20")]
    with pytest.raises(InputError, match=r"cannot recognise the date format .*'soon'.*--date-format"):
        rfmflow.score(write(tmp_path / "words.csv", delimited(rows)))


# --- whitespace-separated files ----------------------------------------------------------


def test_whitespace_separated_without_header(tmp_path: Path) -> None:
    text = "00001 19970101  1   11.77\n00002 19970112  1   12.00\n\n00001   19970105 2 20.00\n"
    path = write(tmp_path / "cdnow_sample.txt", text)
    result = rfmflow.score(path, header=False, column_names=["customer_id", "date", "cds", "dollar_value"])
    # As of 1997-01-13; ids keep their leading zeros.
    assert rfm(result) == {"00001": (8, 2, D("31.77")), "00002": (1, 1, D("12.00"))}
    assert result.input.columns == {"customer": "customer_id", "date": "date", "amount": "dollar_value"}
    # Without names the columns are column1..column4 and can be mapped.
    with pytest.raises(InputError, match="the file has: column1, column2, column3, column4"):
        rfmflow.score(path, header=False)
    mapped = rfmflow.score(
        path, header=False, columns={"customer": "column1", "date": "column2", "amount": "column4"}
    )
    assert rfm(mapped) == rfm(result)


def test_real_cdnow_master(cdnow_master: Path) -> None:
    result = rfmflow.score(cdnow_master)
    assert result.n_customers == 23_570
    assert result.input.rows_read == 69_659
    assert result.input.rows_rejected == 0
    assert result.input.first_day == date(1997, 1, 1)
    assert result.input.last_day == date(1998, 6, 30)
    assert result.as_of == date(1998, 7, 1)
    assert result.input.columns == {"customer": "customer_id", "date": "date", "amount": "dollar_value"}
    first = result.customers.slice(0, 1).to_pylist()[0]
    # Customer 00001 bought once, on 1997-01-01, for 11.77.
    assert (first["customer_id"], first["recency_days"], first["frequency"], first["monetary"]) == (
        "00001",
        546,
        1,
        D("11.77"),
    )


# --- bad rows ----------------------------------------------------------------------------

BAD = (
    "customer_id,order_date,amount\n"  # 1
    "c1,2024-01-01,20\n"  # 2
    "c1,yesterday,5\n"  # 3
    "c2,2024-01-05,abc\n"  # 4
    "c2,2024-01-06,\n"  # 5
    ",2024-01-07,3\n"  # 6
    "c3,2024-01-08,1,extra\n"  # 7
    "c3,,4\n"  # 8
    "c3,2024-01-09,7.25\n"  # 9
)
BAD_REJECTS = [
    ["3", "unparseable date 'yesterday' (expected an ISO date such as 2024-03-01)"],
    ["4", "non-numeric amount 'abc'"],
    ["5", "missing amount"],
    ["6", "missing customer id"],
    ["7", "wrong number of fields: expected 3, got 4"],
    ["8", "missing date"],
]


def test_malformed_rows_are_rejected_with_line_and_reason(tmp_path: Path) -> None:
    rejects = tmp_path / "out" / "rejects.csv"
    result = rfmflow.score(write(tmp_path / "bad.csv", BAD), rejects_path=rejects)
    # As of 2024-01-10: c1 9 days, c3 1 day; c2 has no valid row.
    assert rfm(result) == {"c1": (9, 1, D("20.00")), "c3": (1, 1, D("7.25"))}
    assert result.input.rows_read == 8
    assert result.input.rows_rejected == 6
    assert result.input.rejects_path == str(rejects)
    assert result.summary_dict()["input"]["rows_rejected"] == 6
    header, rows = read_rejects(rejects)
    assert header == ["line", "reason", "raw"]
    assert [r[:2] for r in rows] == BAD_REJECTS
    raw = {r[0]: r[2] for r in rows}
    assert "yesterday" in raw["3"]
    assert "abc" in raw["4"]
    assert raw["7"] == "c3,2024-01-08,1,extra"


def test_default_rejects_file(tmp_path: Path) -> None:
    result = rfmflow.score(write(tmp_path / "bad.csv", BAD))
    assert result.input.rejects_path is not None
    written = Path(result.input.rejects_path)
    assert written.name == "bad.rejects.csv"
    assert [r[:2] for r in read_rejects(written)[1]] == BAD_REJECTS


def test_no_rejects_file_without_rejects(tmp_path: Path) -> None:
    rejects = tmp_path / "r.csv"
    result = rfmflow.score(write(tmp_path / "ok.csv", delimited(BASE_ROWS)), rejects_path=rejects)
    assert result.input.rejects_path is None
    assert not rejects.exists()


def test_strict_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    rejects = tmp_path / "r.csv"
    with pytest.raises(RejectedRowError) as info:
        rfmflow.score(write(tmp_path / "bad.csv", BAD), strict=True, rejects_path=rejects)
    assert (info.value.line, info.value.reason) == (3, BAD_REJECTS[0][1])
    assert "line 3" in str(info.value)
    assert not rejects.exists()


def test_strict_reports_a_wrong_field_count_in_file_order(tmp_path: Path) -> None:
    text = "customer_id,order_date,amount\nc1,2024-01-01,1\nc2,2024-01-02,1,x\nc3,2024-01-03,bad\n"
    with pytest.raises(RejectedRowError) as info:
        rfmflow.score(write(tmp_path / "bad.csv", text), strict=True)
    assert (info.value.line, info.value.reason) == (3, "wrong number of fields: expected 3, got 4")


def test_a_file_where_every_row_is_bad(tmp_path: Path) -> None:
    text = "customer_id,order_date,amount\nc1,2024-01-01,x\nc2,2024-01-02,y\n"
    with pytest.raises(InputError) as info:
        rfmflow.score(write(tmp_path / "allbad.csv", text))
    assert "no valid rows to score (2 rejected" in str(info.value)
    assert "line 2: non-numeric amount 'x'" in str(info.value)


# --- as-of -------------------------------------------------------------------------------


def test_explicit_as_of(tmp_path: Path) -> None:
    result = rfmflow.score(write(tmp_path / "base.csv", delimited(BASE_ROWS)), as_of="2024-01-31")
    assert result.as_of == date(2024, 1, 31)
    assert not result.as_of_is_default
    assert rfm(result) == {"c1": (30, 1, D("15.00")), "c2": (23, 2, D("40.50")), "c3": (22, 1, D("7.25"))}
    same = rfmflow.score(tmp_path / "base.csv", as_of=date(2024, 1, 31))
    assert same.customers.to_pylist() == result.customers.to_pylist()


def test_events_after_an_explicit_as_of(tmp_path: Path) -> None:
    path = write(tmp_path / "base.csv", delimited(BASE_ROWS))
    with pytest.raises(InputError) as info:
        rfmflow.score(path, as_of="2024-01-05")
    message = str(info.value)
    assert "3 events are after the as-of date 2024-01-05" in message
    assert "first at line 3" in message
    assert "--drop-after-as-of" in message
    dropped = rfmflow.score(path, as_of="2024-01-05", drop_after_as_of=True)
    # Only c1's purchase on 01-01 and c2's on 01-05 count; c3 had no event yet.
    assert rfm(dropped) == {"c1": (4, 1, D("20.00")), "c2": (0, 1, D("30.50"))}


def test_as_of_before_every_event(tmp_path: Path) -> None:
    path = write(tmp_path / "base.csv", delimited(BASE_ROWS))
    with pytest.raises(InputError, match="every event is after the as-of date 2023-12-31"):
        rfmflow.score(path, as_of="2023-12-31", drop_after_as_of=True)


@pytest.mark.parametrize("bad", ["2024-13-01", "yesterday", "01/02/2024"])
def test_bad_as_of(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path / "base.csv", delimited(BASE_ROWS))
    with pytest.raises(InputError, match=r"as_of: .* is not a date \(use YYYY-MM-DD\)"):
        rfmflow.score(path, as_of=bad)


def test_no_rejects_file_is_left_behind_when_the_run_fails(tmp_path: Path) -> None:
    rejects = tmp_path / "r.csv"
    with pytest.raises(InputError, match="after the as-of date"):
        rfmflow.score(write(tmp_path / "bad.csv", BAD), as_of="2024-01-05", rejects_path=rejects)
    assert not rejects.exists()


# --- unusable input ----------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        rfmflow.score(tmp_path / "nope.csv")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        rfmflow.score(tmp_path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.csv", "", "the file is empty"),
        ("blank.csv", "\n  \n", "the file is empty"),
        ("empty.jsonl", "", "the file is empty"),
        ("blank.json", "\n\n", "the file is empty"),
        ("array.json", "[]", "no columns found"),
        ("header.csv", "customer_id,order_date,amount\n", "header.csv: no valid rows to score$"),
        ("empty.parquet", "", "the file is empty"),
    ],
)
def test_empty_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        rfmflow.score(write(tmp_path / name, text))


def test_not_utf8(tmp_path: Path) -> None:
    path = write(
        tmp_path / "latin1.csv", "customer_id,order_date,amount\nJosé,2024-01-01,1\n", encoding="latin-1"
    )
    with pytest.raises(InputError, match="not utf-8 text"):
        rfmflow.score(path)


def test_unknown_file_type(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown file type '\.xlsx'"):
        rfmflow.score(write(tmp_path / "book.xlsx", "x"))


# --- schemes and output columns ---------------------------------------------------------


def test_output_columns_and_scores(tmp_path: Path) -> None:
    result = _base_csv(tmp_path)
    assert result.customers.column_names == STANDARD_COLUMNS
    rows = {r["customer_id"]: r for r in result.customers.to_pylist()}
    # Quintile score = 1 + floor(5 * (rank - 1) / 3), the best value 5; recency ranks the oldest first.
    # R: c1 (10 days) 1, c2 (3) 2, c3 (2, the best) 5.  F: c1, c3 tie at 1 -> 1; c2 (best) -> 5.
    # M: c3 (7.25) 1, c1 (15) 2, c2 (40.50, the best) 5.
    assert {c: (r["r_score"], r["f_score"], r["m_score"], r["rfm"]) for c, r in rows.items()} == {
        "c1": (1, 1, 2, "112"),
        "c2": (2, 5, 5, "255"),
        "c3": (5, 1, 1, "511"),
    }
    assert {c: r["segment"] for c, r in rows.items()} == {"c1": "Lost", "c2": "Can't Lose Them", "c3": "New"}
    assert {c: r["tenure_days"] for c, r in rows.items()} == {"c1": 10, "c2": 6, "c3": 2}
    assert len(result.to_pandas()) == 3


def test_scheme_extras_such_as_tags(tmp_path: Path) -> None:
    result = rfmflow.score(write(tmp_path / "base.csv", delimited(BASE_ROWS)), scheme="crm")
    assert result.customers.column_names == [*STANDARD_COLUMNS, "tags"]
    rows = {r["customer_id"]: r for r in result.customers.to_pylist()}
    assert rows["c2"]["tags"] == "Repeat Buyer"
    assert rows["c1"]["tags"] in ("", None)
    # crm: within 30 days and one order -> Recent Customers; c2 has 2 orders but m_pct 2/3 < 0.8
    # and is Loyal (2+ orders within 90 days, m_pct >= 0.5).
    assert {c: r["segment"] for c, r in rows.items()} == {
        "c1": "Recent Customers",
        "c2": "Loyal Customers",
        "c3": "Recent Customers",
    }


def test_scheme_from_a_yaml_file(tmp_path: Path) -> None:
    yaml_path = write(
        tmp_path / "mine.yaml",
        "name: mine\nscores: {recency: {edges: [5]}, frequency: {edges: [1]}, monetary: null}\n"
        "segments:\n  - {name: Fresh, when: r_score == 2}\n  - {name: Stale, when: true}\n",
    )
    result = rfmflow.score(write(tmp_path / "base.csv", delimited(BASE_ROWS)), scheme=yaml_path)
    rows = {r["customer_id"]: (r["r_score"], r["f_score"], r["m_score"], r["rfm"], r["segment"])
            for r in result.customers.to_pylist()}  # fmt: skip
    assert rows == {
        "c1": (1, 1, None, "11", "Stale"),
        "c2": (2, 2, None, "22", "Fresh"),
        "c3": (2, 1, None, "21", "Fresh"),
    }


def test_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(SchemeError, match=r"unknown scheme 'nope'; built-in schemes: .*rfm11"):
        rfmflow.score(write(tmp_path / "base.csv", delimited(BASE_ROWS)), scheme="nope")


def test_scheme_counting_orders_needs_an_order_column(tmp_path: Path) -> None:
    scheme = rfmflow.scheme_from_dict(
        {
            "name": "orders",
            "metrics": {"frequency": {"count": "orders"}},
            "segments": [{"name": "All", "when": True}],
        }
    )
    with pytest.raises(InputError, match="has no order id column; map one with --order-col"):
        rfmflow.score(write(tmp_path / "base.csv", delimited(BASE_ROWS)), scheme=scheme)


def test_parquet_statistics_never_hide_a_bad_row(tmp_path: Path) -> None:
    """Clean Parquet files skip row-by-row validation (their statistics prove every row valid);
    an empty id or a null in any row group must still be caught."""
    days = [date(2024, 1, 1) + timedelta(days=i % 30) for i in range(3000)]
    ids = [f"c{i % 50}" for i in range(3000)]
    amounts = [1.0] * 3000
    clean = tmp_path / "clean.parquet"
    pq.write_table(
        pa.table({"customer_id": ids, "order_date": days, "amount": amounts}), clean, row_group_size=1000
    )
    assert rfmflow.score(clean).input.rows_rejected == 0

    empty_id = ids.copy()
    empty_id[2500] = ""
    bad = tmp_path / "empty-id.parquet"
    pq.write_table(
        pa.table({"customer_id": empty_id, "order_date": days, "amount": amounts}), bad, row_group_size=1000
    )
    result = rfmflow.score(bad, rejects_path=tmp_path / "r1.csv")
    assert result.input.rows_rejected == 1
    assert read_rejects(tmp_path / "r1.csv")[1][0][:2] == ["2501", "missing customer id"]

    null_amount: list[float | None] = list(amounts)
    null_amount[1999] = None
    bad2 = tmp_path / "null-amount.parquet"
    pq.write_table(
        pa.table({"customer_id": ids, "order_date": days, "amount": null_amount}), bad2, row_group_size=1000
    )
    result = rfmflow.score(bad2, rejects_path=tmp_path / "r2.csv")
    assert result.input.rows_rejected == 1
    assert read_rejects(tmp_path / "r2.csv")[1][0][:2] == ["2000", "missing amount"]


def test_amounts_out_of_range_or_not_finite_are_rejected(tmp_path: Path) -> None:
    text = "customer_id,order_date,amount\na,2024-01-01,99999999999999999\nb,2024-01-02,NaN\nc,2024-01-03,5\n"
    result = rfmflow.score(write(tmp_path / "big.csv", text), rejects_path=tmp_path / "r.csv")
    assert rfm(result) == {"c": (1, 1, D("5.00"))}
    reasons = [r[1] for r in read_rejects(tmp_path / "r.csv")[1]]
    assert reasons == [
        "amount '99999999999999999' is not a finite number below 1e+13",
        "non-numeric amount 'NaN'",
    ]
    # typed columns: a NaN double and a huge decimal (Parquet statistics must not wave them through)
    table = pa.table(
        {
            "customer_id": ["a", "b", "c"],
            "order_date": pa.array([date(2024, 1, 1)] * 3, pa.date32()),
            "amount": pa.array([float("nan"), 1.0, float("inf")]),
        }
    )
    pq.write_table(table, tmp_path / "nan.parquet")
    result = rfmflow.score(tmp_path / "nan.parquet", rejects_path=tmp_path / "r2.csv")
    assert rfm(result) == {"b": (1, 1, D("1.00"))}
    assert result.input.rows_rejected == 2
    huge = pa.table(
        {
            "customer_id": ["a", "b"],
            "order_date": pa.array([date(2024, 1, 1)] * 2, pa.date32()),
            "amount": pa.array([D("5000000000000000.00"), D("1.00")], pa.decimal128(18, 2)),
        }
    )
    pq.write_table(huge, tmp_path / "huge.parquet")
    result = rfmflow.score(tmp_path / "huge.parquet", rejects_path=tmp_path / "r3.csv")
    assert rfm(result) == {"b": (1, 1, D("1.00"))}
    assert result.input.rows_rejected == 1


def test_when_every_row_is_rejected_the_rejects_file_explains_why(tmp_path: Path) -> None:
    text = "customer_id,order_date,amount\n,2024-01-01,3\nb,2024-01-02,abc\n"
    rejects = tmp_path / "why.csv"
    with pytest.raises(
        InputError, match=r"no valid rows to score \(2 rejected, first: line 2: missing customer id"
    ):
        rfmflow.score(write(tmp_path / "bad.csv", text), rejects_path=rejects)
    assert [r[:2] for r in read_rejects(rejects)[1]] == [
        ["2", "missing customer id"],
        ["3", "non-numeric amount 'abc'"],
    ]


def test_excel_quirks_sep_line_and_trailing_delimiters(tmp_path: Path) -> None:
    sep = "sep=;\ncustomer_id;order_date;amount\na;2024-01-01;10\nb;2024-01-02;5\n"
    assert rfm(rfmflow.score(write(tmp_path / "sep.csv", sep))) == {
        "a": (2, 1, D("10.00")),
        "b": (1, 1, D("5.00")),
    }
    trailing = "customer_id,order_date,amount\na,2024-01-01,10,\nb,2024-01-02,5,\n"
    assert rfm(rfmflow.score(write(tmp_path / "trail.csv", trailing))) == {
        "a": (2, 1, D("10.00")),
        "b": (1, 1, D("5.00")),
    }


def test_a_metric_counting_event_types_the_data_lacks_is_warned_about(tmp_path: Path) -> None:
    text = "customer_id,order_date,amount\na,2024-01-01,10\nb,2024-01-02,5\n"
    result = rfmflow.score(write(tmp_path / "t.csv", text), scheme="telegram-scrm-messages")
    missing = [w.message for w in result.warnings if w.code == "event-types-missing"]
    assert len(missing) == 1 and missing[0].startswith("metrics.monetary uses events of type message")
    typed = "customer_id,order_date,type,amount\na,2024-01-01,message,\nb,2024-01-02,purchase,5\n"
    result = rfmflow.score(write(tmp_path / "typed.csv", typed), scheme="telegram-scrm-messages")
    assert not [w for w in result.warnings if w.code == "event-types-missing"]


def test_exact_duplicate_lines_are_recognised(tmp_path: Path) -> None:
    text = (
        "customer_id,order_date,amount\na,2024-01-01,10\na,2024-01-01,10\nb,2024-01-02,5\na,2024-01-01,10\n"
    )
    result = rfmflow.score(write(tmp_path / "dup.csv", text))
    assert [w.message for w in result.warnings if w.code == "duplicate-rows"] == [
        "2 lines repeat an earlier line exactly (every column); they count as separate events: "
        "remove them if they are duplicates"
    ]
    assert rfm(result)["a"] == (2, 3, D("30.00"))


def test_other_encodings_by_option(tmp_path: Path) -> None:
    path = tmp_path / "cp1252.csv"
    path.write_bytes("customer_id;order_date;amount\nJosé;2024-01-01;12,50\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"not utf-8 text .* pass --encoding"):
        rfmflow.score(path)
    result = rfmflow.score(path, encoding="cp1252", decimal_comma=True)
    assert rfm(result) == {"José": (1, 1, D("12.50"))}


def test_second_review_edge_cases(tmp_path: Path) -> None:
    """Each of these once ended in a traceback or a silently wrong number."""
    text = (
        "customer_id,order_date,amount\n"
        "a,9999-12-31,1\n"  # a sentinel date
        "b,2024-01-01,10000000\n"  # ten million units: fine with 6 decimals
        "c,2024-01-02,1\n"
    )
    result = rfmflow.score(write(tmp_path / "s.csv", text), money_decimals=6, rejects_path=tmp_path / "r.csv")
    assert rfm(result) == {"b": (2, 1, D("10000000.000000")), "c": (1, 1, D("1.000000"))}
    assert read_rejects(tmp_path / "r.csv")[1][0][:2] == [
        "2",
        "date '9999-12-31' is out of range (1900 to 2199)",
    ]

    compact = "customer_id,order_date,amount\na,20240101,1\nb,2024113,1\n"
    result = rfmflow.score(write(tmp_path / "c.csv", compact), rejects_path=tmp_path / "r2.csv")
    assert set(rfm(result)) == {"a"}
    assert read_rejects(tmp_path / "r2.csv")[1][0][1].startswith("unparseable date '2024113'")

    with pytest.raises(InputError, match="must be one character"):
        rfmflow.score(write(tmp_path / "d.csv", compact), delimiter="||")
    with pytest.raises(InputError, match="unknown time zone 'localtime'"):
        rfmflow.score(write(tmp_path / "e.csv", compact), timezone="localtime")
    with pytest.raises(InputError, match="cannot write"):
        rfmflow.score(write(tmp_path / "f.csv", compact)).write("/proc/rfmflow-cannot-write-here.csv")


def test_field_measures_reject_non_finite_values(tmp_path: Path) -> None:
    scheme = tmp_path / "pts.yaml"
    scheme.write_text(
        "name: pts\nmetrics:\n  monetary: {events: any, measure: 'field:pts'}\n"
        "scores: {monetary: {quantiles: 3}}\nsegments:\n  - {name: All, when: true}\n"
    )
    text = "customer_id,order_date,pts\na,2024-01-01,5\nb,2024-01-02,NaN\nc,2024-01-02,inf\n"
    result = rfmflow.score(write(tmp_path / "p.csv", text), scheme=scheme, rejects_path=tmp_path / "r.csv")
    assert [r["customer_id"] for r in result.customers.to_pylist()] == ["a"]
    assert [r[1] for r in read_rejects(tmp_path / "r.csv")[1]] == ["field pts is not a finite number"] * 2


def test_named_zones_are_converted_like_offsets(tmp_path: Path) -> None:
    text = (
        "customer_id,order_date,amount\n"
        "a,2024-01-01 23:30:00 UTC,10\n"
        "b,2024-01-01 23:30:00+00:00,10\n"
        "c,2024-01-01 23:30:00 America/New_York,10\n"
        "d,2024-01-01 23:30:00,10\n"
    )
    result = rfmflow.score(write(tmp_path / "z.csv", text), timezone="Asia/Tokyo", as_of="2024-01-10")
    # a, b, c are instants (all on 2 January in Tokyo); d has no zone and is taken as local
    assert {c: v[0] for c, v in rfm(result).items()} == {"a": 8, "b": 8, "c": 8, "d": 9}

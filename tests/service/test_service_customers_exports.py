"""CSV and Parquet exports over HTTP and ``rfmflow export``: what they hold equals the lists
the API pages through, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from customer_helpers import pages, seed
from service_helpers import Database, Server
from test_service_customers_history import runs_on_three_days

from rfmflow.service.cli_exports import export
from rfmflow.service.customer_search import CUSTOMER_COLUMNS

FILTERED = {"tag_none": "churn-risk", "sort": "monetary", "order": "desc"}


def csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def as_csv(item: dict[str, Any]) -> dict[str, str]:
    """An API item as the CSV export writes it."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, list):
            return ";".join(value)
        return str(value)

    return {k: cell(v) for k, v in item.items()}


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row as the API writes it (decimals as text, dates ISO)."""

    def value(v: Any) -> Any:
        if isinstance(v, Decimal):
            return format(v, "f")
        if isinstance(v, date | datetime):
            return v.isoformat()
        return v

    return {k: value(v) for k, v in row.items()}


def download(client: httpx.Client, path: str, params: dict[str, Any], fmt: str) -> httpx.Response:
    answer = client.get(path, params={**params, "format": fmt})
    assert answer.status_code == 200, answer.text
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith(f'.{fmt}"')
    return answer


def parquet_rows(body: bytes) -> list[dict[str, Any]]:
    return list(pq.read_table(io.BytesIO(body)).to_pylist())


def test_customer_exports_equal_the_list(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the server's Parquet files go here
    seed(server)
    with server.client("analyst") as client:
        for params in ({}, FILTERED, {"segment": ["Lost", "Hibernating"], "sort": "last_activity"}):
            listed = pages(client, "/v1/customers", params, 7)
            as_csv_file = download(client, "/v1/exports/customers", params, "csv")
            assert as_csv_file.headers["content-type"] == "text/csv; charset=utf-8"
            assert "content-length" not in as_csv_file.headers  # streamed
            assert as_csv_file.text.splitlines()[0] == ",".join(CUSTOMER_COLUMNS)
            assert csv_rows(as_csv_file.content) == [as_csv(i) for i in listed], params
            as_parquet = download(client, "/v1/exports/customers", params, "parquet")
            assert as_parquet.headers["content-type"] == "application/vnd.apache.parquet"
            assert [as_json(r) for r in parquet_rows(as_parquet.content)] == listed, params
        schema = pq.read_table(io.BytesIO(as_parquet.content)).schema
        assert str(schema.field("monetary").type) == "decimal128(38, 2)"
        assert str(schema.field("tags").type) == "list<element: string>"
        assert str(schema.field("last_activity").type) == "date32[day]"
        empty = download(client, "/v1/exports/customers", {"q": "nobody"}, "parquet")
        assert (
            parquet_rows(empty.content) == [] and pq.read_table(io.BytesIO(empty.content)).num_columns == 19
        )
        assert csv_rows(download(client, "/v1/exports/customers", {"q": "nobody"}, "csv").content) == []
    assert list(tmp_path.glob("rfmflow-export-*")) == []  # the temporary Parquet files are gone


def test_segment_export(server: Server) -> None:
    seed(server)
    with server.client("admin") as client:
        listed = pages(client, "/v1/customers", {"segment": "Lost", "sort": "recency"}, 100)
        found = download(client, "/v1/exports/segments/Lost/customers", {"sort": "recency"}, "csv")
        assert csv_rows(found.content) == [as_csv(i) for i in listed] and listed
        assert client.get("/v1/exports/segments/Nope/customers").status_code == 404
        odd = download(client, "/v1/exports/segments/Can't Lose Them/customers", {}, "csv")
        assert 'filename="rfmflow-segment-Can-t-Lose-Them-' in odd.headers["content-disposition"]
        twice = client.get("/v1/exports/segments/Lost/customers", params={"segment": "Lost"})
        assert twice.status_code == 422 and twice.json()["detail"][0]["loc"] == ["query", "segment"]


def test_bad_export_parameters_are_422_before_anything_is_sent(server: Server) -> None:
    seed(server)
    with server.client("analyst") as client:
        for path, params, where in (
            ("/v1/exports/customers", {"format": "xlsx"}, "format"),
            ("/v1/exports/customers", {"sort": "age"}, "sort"),
            ("/v1/exports/customers", {"f_score_min": 5, "f_score_max": 1}, "f_score_min"),
            ("/v1/exports/customers", {"segment": "Nobody"}, "segment"),
            ("/v1/exports/transitions", {"from": "2026-03-02", "to": "2026-03-01"}, "from"),
            ("/v1/exports/runs", {"from": "2026-03-02", "to": "2026-03-01"}, "from"),
            ("/v1/exports/snapshots", {"per": "hour"}, "per"),
        ):
            bad = client.get(path, params=params)
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == where, (path, bad.text)


def test_history_exports_equal_their_lists(server: Server) -> None:
    days = runs_on_three_days(server)
    window = {"from": "2000-01-01", "to": days[2].isoformat()}
    with server.client("analyst") as client:
        moves = pages(client, "/v1/transitions/moves", window, 50)
        for fmt in ("csv", "parquet"):
            got = download(client, "/v1/exports/transitions", window, fmt)
            if fmt == "csv":
                assert csv_rows(got.content) == [as_csv(m) for m in moves]
            else:
                rows = [as_json(r) for r in parquet_rows(got.content)]
                assert [{**r, "at": datetime.fromisoformat(r["at"])} for r in rows] == [
                    {**m, "at": datetime.fromisoformat(m["at"])} for m in moves
                ]

        runs = list(reversed(client.get("/v1/runs").json()["runs"]))
        exported_runs = csv_rows(download(client, "/v1/exports/runs", {}, "csv").content)
        assert [int(r["id"]) for r in exported_runs] == [r["id"] for r in runs]
        assert [r["as_of"] for r in exported_runs] == [r["as_of"] for r in runs]
        assert [int(r["customers"]) for r in exported_runs] == [r["customers"] for r in runs]
        last_day = csv_rows(
            download(client, "/v1/exports/runs", {"from": days[2].isoformat()}, "csv").content
        )
        assert [r["as_of"] for r in last_day] == [days[2].isoformat()]

        for per in ("day", "run"):
            snaps = client.get("/v1/snapshots", params={"per": per, "segment": ["Lost", "Champions"]}).json()
            flat = [
                {"run_id": s["run_id"], "as_of": s["as_of"], "scheme_version": s["scheme_version"], **seg}
                for s in snaps["snapshots"]
                for seg in s["segments"]
            ]
            params = {"per": per, "segment": ["Lost", "Champions"]}
            rows = [
                as_json(r)
                for r in parquet_rows(download(client, "/v1/exports/snapshots", params, "parquet").content)
            ]
            assert rows == [{k: v for k, v in f.items() if k != "revenue_minor"} for f in flat] and rows


def test_only_keys_that_may_export_can(server: Server) -> None:
    seed(server)
    paths = [
        "/v1/exports/customers",
        "/v1/exports/segments/Lost/customers",
        "/v1/exports/transitions",
        "/v1/exports/runs",
        "/v1/exports/snapshots",
    ]
    for role, status in (("agent", 403), ("ingest", 403), ("analyst", 200), ("admin", 200)):
        with server.client(role) as client:
            for path in paths:
                assert client.get(path).status_code == status, (role, path)
    with server.client("agent") as agent:
        assert "analyst" in agent.get("/v1/exports/customers").json()["detail"]
    with server.client(None) as anonymous:
        assert anonymous.get("/v1/exports/customers").status_code == 401


# --- rfmflow export ---------------------------------------------------------------------------
def _env(tmp_path: Path, database: Database) -> str:
    path = tmp_path / "service.env"
    path.write_text(f"RFMFLOW_DATABASE_URL={database.url}\n")
    return str(path)


def test_cli_exports_equal_the_api(server: Server, database: Database, tmp_path: Path) -> None:
    days = runs_on_three_days(server)
    env = _env(tmp_path, database)
    runner = CliRunner()
    with server.client("analyst") as client:
        listed = pages(client, "/v1/customers", FILTERED, 100)
        moves = pages(client, "/v1/transitions/moves", {"from": "2000-01-01", "to": days[2].isoformat()}, 100)
        snaps = client.get("/v1/snapshots").json()["snapshots"]

    out = tmp_path / "customers.parquet"
    args = ["customers", "--tag-none", "churn-risk", "--sort", "monetary", "--order", "desc", "-o", str(out)]
    done = runner.invoke(export, [*args, "--env-file", env])
    assert done.exit_code == 0, done.output
    assert f"exported {len(listed)} customers to {out} (parquet)" in done.stderr
    assert [as_json(r) for r in pq.read_table(out).to_pylist()] == listed
    assert not list(tmp_path.glob(".*.partial"))

    to_stdout = runner.invoke(export, [*args[:-2], "--env-file", env])
    assert to_stdout.exit_code == 0 and csv_rows(to_stdout.stdout.encode()) == [as_csv(i) for i in listed]
    assert "to stdout (csv)" in to_stdout.stderr

    moved = tmp_path / "moves.csv"
    done = runner.invoke(
        export,
        [
            "transitions",
            "--from",
            "2000-01-01",
            "--to",
            days[2].isoformat(),
            "-o",
            str(moved),
            "--env-file",
            env,
        ],
    )
    assert done.exit_code == 0, done.output
    assert csv_rows(moved.read_bytes()) == [as_csv(m) for m in moves]

    ran = tmp_path / "runs.pq"
    assert runner.invoke(export, ["runs", "-o", str(ran), "--env-file", env]).exit_code == 0
    assert [r["as_of"].isoformat() for r in pq.read_table(ran).to_pylist()] == [
        days[0].isoformat(),
        days[1].isoformat(),
        days[1].isoformat(),
        days[2].isoformat(),
    ]
    snap_file = tmp_path / "snaps.csv"
    assert (
        runner.invoke(
            export, ["snapshots", "--segment", "Lost", "-o", str(snap_file), "--env-file", env]
        ).exit_code
        == 0
    )
    rows = csv_rows(snap_file.read_bytes())
    assert [(int(r["run_id"]), int(r["customers"])) for r in rows] == [
        (s["run_id"], seg["customers"]) for s in snaps for seg in s["segments"] if seg["segment"] == "Lost"
    ]


def test_cli_export_errors(server: Server, database: Database, tmp_path: Path) -> None:
    seed(server)
    env = _env(tmp_path, database)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(export, [*args, "--env-file", env])

    upside_down = run("customers", "--r-score-min", "4", "--r-score-max", "2")
    assert (
        upside_down.exit_code == 2
        and "--r-score-min: must not be greater than r_score_max" in upside_down.stderr
    )
    assert run("customers", "--format", "parquet").exit_code == 2  # Parquet needs -o
    assert run("customers", "--monetary-min", "lots").exit_code == 2
    assert run("runs", "--from", "2026-03-02", "--to", "2026-03-01").exit_code == 2
    unknown = run("customers", "--segment", "Nobody", "-o", str(tmp_path / "x.csv"))
    assert unknown.exit_code == 1 and "no segment 'Nobody'" in unknown.stderr
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.glob(".*.partial"))

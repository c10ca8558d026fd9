"""``POST /v1/imports`` through real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from service_helpers import Server, count_rows
from test_service_imports import MESSY, REJECTED_LINES

import rfmflow.service.routes_imports as routes
from rfmflow.service.db.store import read_customers
from rfmflow.service.imports import MAX_UPLOAD_BYTES

CSV = {"Content-Type": "text/csv"}


def test_upload_csv_answers_the_report_with_rejects_inline(server: Server) -> None:
    with server.client("ingest") as client:
        first = client.post("/v1/imports", content=MESSY.encode(), headers=CSV, params={"name": "shop.csv"})
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["rows_read"], body["accepted"], body["duplicates"], body["rejected"]) == (12, 5, 0, 7)
        assert body["source"] == "shop.csv" and body["rejects_path"] is None
        assert [r["line"] for r in body["rejects"]] == REJECTED_LINES
        assert body["rejects"][0] == {
            "line": 4,
            "reason": "non-numeric amount 'abc'",
            "raw": "c2 | 2024-05-02 | purchase | abc",
        }
        again = client.post("/v1/imports", content=MESSY.encode(), headers=CSV).json()
        assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 5, 7)
    assert count_rows(server.engine, "events") == 5
    with server.client(None) as anonymous:
        metrics = anonymous.get("/metrics").text
    assert 'rfmflow_events_ingested_total{source="import"} 5.0' in metrics
    assert 'rfmflow_events_duplicate_total{source="import"} 5.0' in metrics


def test_upload_json_lines_and_parquet_with_options(server: Server) -> None:
    lines = "\n".join(
        json.dumps(item)
        for item in (
            {"event_id": "m-1", "chat": "tg-1", "at": "01/02/2024 10:00", "kind": "message"},
            {"event_id": "m-2", "chat": "tg-1", "at": "02/02/2024 11:00", "kind": "purchase", "sum": "4,50"},
        )
    )
    params: dict[str, Any] = {
        "customer_col": "chat", "date_col": "at", "type_col": "kind", "amount_col": "sum",
        "date_format": "%d/%m/%Y %H:%M", "decimal_comma": "true", "tz": "Asia/Tokyo",
    }  # fmt: skip
    with server.client("admin") as client:
        done = client.post(
            "/v1/imports",
            content=lines.encode(),
            headers={"Content-Type": "application/x-ndjson"},
            params=params,
        )
        assert done.status_code == 200, done.text
        assert (done.json()["accepted"], done.json()["id_column"]) == (2, "event_id")
        table = pa.table({"customer_id": ["p1"], "order_date": ["2024-03-01"], "amount": [7.5]})
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        parquet = client.post(
            "/v1/imports",
            content=buffer.getvalue(),
            headers={"Content-Type": "application/vnd.apache.parquet"},
        )
        assert parquet.status_code == 200, parquet.text
        assert parquet.json()["accepted"] == 1
    with server.engine.connect() as conn:
        customers = read_customers(conn)
    assert customers["tg-1"]["monetary_minor"] == 450 and customers["p1"]["monetary_minor"] == 750


def test_strict_upload_is_422_and_writes_nothing(server: Server) -> None:
    with server.client("ingest") as client:
        answer = client.post("/v1/imports", content=MESSY.encode(), headers=CSV, params={"strict": "true"})
    assert answer.status_code == 422
    assert answer.json()["line"] == 4 and "upload.csv: line 4: non-numeric amount" in answer.json()["detail"]
    assert "/tmp" not in answer.text
    assert count_rows(server.engine, "events") == 0


def test_bad_files_are_422_with_their_rejects(server: Server) -> None:
    with server.client("ingest") as client:
        nothing_valid = client.post(
            "/v1/imports",
            content=b"customer_id,date\nc1,2024-01-01\nc2,never\n,2024-01-02\n",
            headers=CSV,
            params={"event_type": "refund"},
        )
        assert nothing_valid.status_code == 422
        body = nothing_valid.json()
        assert "no valid rows" in body["detail"] and "/tmp" not in body["detail"]
        assert [(r["line"], r["reason"][:16]) for r in body["rejects"]] == [
            (3, "unparseable date"),
            (4, "missing customer"),
        ]
        no_columns = client.post("/v1/imports", content=b"a,b\n1,2\n", headers=CSV)
        assert no_columns.status_code == 422 and "no recognisable customer" in no_columns.json()["detail"]
        empty = client.post("/v1/imports", content=b"", headers=CSV)
        assert empty.status_code == 422
        bad_zone = client.post("/v1/imports", content=MESSY.encode(), headers=CSV, params={"tz": "Nowhere/X"})
        assert bad_zone.status_code == 422
        unsupported = client.post(
            "/v1/imports", content=b"<xml/>", headers={"Content-Type": "application/xml"}
        )
        assert unsupported.status_code == 415
    assert count_rows(server.engine, "events") == 0


def test_oversized_upload_is_413(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_UPLOAD_BYTES == 50 * 1024 * 1024
    monkeypatch.setattr(routes, "MAX_UPLOAD_BYTES", 64 * 1024)
    body = (MESSY.splitlines()[0] + "\n" + "c1,2024-05-01,purchase,1.00,o1,web\n" * 3000).encode()
    assert len(body) > 64 * 1024
    with server.client("ingest") as client:
        declared = client.post("/v1/imports", content=body, headers=CSV)
        assert declared.status_code == 413 and "the limit is 0 MB" not in declared.text

        def chunks() -> Any:  # no Content-Length: counted while streaming
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        streamed = client.post("/v1/imports", content=chunks(), headers=CSV)
        assert streamed.status_code == 413
    assert count_rows(server.engine, "events") == 0


@pytest.mark.parametrize(("role", "status"), [(None, 401), ("agent", 403), ("analyst", 403), ("admin", 200)])
def test_roles(server: Server, role: str | None, status: int) -> None:
    with server.client(role) as client:
        answer = client.post("/v1/imports", content=MESSY.encode(), headers=CSV)
    assert answer.status_code == status, answer.text
    if status == 403:
        assert "admin, ingest" in answer.json()["detail"]

"""Hand-off tasks over HTTP: most urgent first, filters, pages, closing once, roles, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from broadcast_helpers import service_fixtures
from service_helpers import Server

from rfmflow.service.db.tables import audit_log, tasks, workflows

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def _seed(server: Server) -> None:
    rows = [  # (customer, queue, priority) in creation order
        ("c1", "support", "low"),
        ("c2", "sales", "high"),
        ("c3", "support", "urgent"),
        ("c4", "support", "high"),
        ("c5", "sales", "normal"),
    ]
    with server.engine.begin() as conn:
        wid = conn.execute(
            sa.insert(workflows)
            .values(
                name="win-back",
                version=1,
                yaml="x",
                status="active",
                created_at=T0,
                created_by="t",
                updated_at=T0,
            )
            .returning(workflows.c.id)
        ).scalar_one()
        for i, (customer, queue, priority) in enumerate(rows):
            conn.execute(
                sa.insert(tasks).values(
                    customer_id=customer,
                    queue=queue,
                    priority=priority,
                    note=f"call {customer}",
                    status="open",
                    segment="At Risk",
                    workflow_id=wid if i % 2 == 0 else None,
                    created_at=T0 + timedelta(minutes=i),
                )
            )


def test_tasks_most_urgent_first_with_filters_and_pages(server: Server) -> None:
    _seed(server)
    with server.client("agent") as client:
        body = client.get("/v1/tasks").json()
        assert [t["customer_id"] for t in body["tasks"]] == ["c3", "c2", "c4", "c5", "c1"]
        assert body["open_by_priority"] == {"urgent": 1, "high": 2, "normal": 1, "low": 1}
        assert body["tasks"][0]["workflow"] == "win-back" and body["tasks"][1]["workflow"] is None
        seen, cursor = [], None
        while True:
            page = client.get(
                "/v1/tasks", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            ).json()
            seen += [t["customer_id"] for t in page["tasks"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["c3", "c2", "c4", "c5", "c1"]
        sales = client.get("/v1/tasks", params={"queue": "sales"}).json()["tasks"]
        assert [t["customer_id"] for t in sales] == ["c2", "c5"]
        high = client.get("/v1/tasks", params={"priority": "high"}).json()["tasks"]
        assert [t["customer_id"] for t in high] == ["c2", "c4"]
        bad = client.get("/v1/tasks", params={"priority": "asap"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "priority"]
        assert client.get("/v1/tasks", params={"cursor": "nonsense"}).status_code == 422
        assert client.get("/v1/tasks/999").status_code == 404


def test_closing_a_task_once_with_roles_and_audit(server: Server) -> None:
    _seed(server)
    with server.client("agent") as client:
        first = client.get("/v1/tasks").json()["tasks"][0]
        done = client.post(f"/v1/tasks/{first['id']}/close", json={"status": "done", "note": "called back"})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "done" and done.json()["closed_by"].startswith("key:")
        again = client.post(f"/v1/tasks/{first['id']}/close", json={"status": "cancelled"})
        assert again.status_code == 409 and "done already" in again.json()["detail"]
        bad = client.post(f"/v1/tasks/{first['id']}/close", json={"status": "open"})
        assert bad.status_code == 422
        assert first["id"] not in [t["id"] for t in client.get("/v1/tasks").json()["tasks"]]
        closed = client.get("/v1/tasks", params={"status": "done"}).json()["tasks"]
        assert [t["id"] for t in closed] == [first["id"]]
        assert len(client.get("/v1/tasks", params={"status": "all"}).json()["tasks"]) == 5
    with server.client("analyst") as client:
        assert client.get("/v1/tasks").status_code == 200
        assert client.post(f"/v1/tasks/{first['id'] + 1}/close", json={}).status_code == 403
    with server.client("ingest") as client:
        assert client.get("/v1/tasks").status_code == 403
    with server.engine.connect() as conn:
        row = conn.execute(sa.select(audit_log).where(audit_log.c.action == "task.close")).one()
    assert row.target == str(first["id"]) and row.details == {"status": "done", "note": "called back"}

"""The hand-off queue page: the API's order and counts, filters, closing with CSRF and roles,
on SQLite and PostgreSQL through real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from dashboard_helpers import Clients, elements, form_value
from service_helpers import Server

from rfmflow.service.db.tables import audit_log, tasks

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def _seed(server: Server) -> None:
    with server.engine.begin() as conn:
        for i, (customer, priority) in enumerate((("c1", "low"), ("c2", "urgent"), ("c3", "high"))):
            conn.execute(
                sa.insert(tasks).values(
                    customer_id=customer,
                    queue="support",
                    priority=priority,
                    note=f"call {customer}",
                    status="open",
                    segment="At Risk",
                    created_at=T0 + timedelta(minutes=i),
                )
            )


def _rows(html: str) -> list[str]:
    return [e["data-task"] for e in elements(html, "tr", data_task=None)]


def test_the_queue_shows_the_apis_order_and_closes_a_task(server: Server, clients: Clients) -> None:
    _seed(server)
    api = clients.api("agent").get("/v1/tasks").json()
    agent = clients.sign_in("agent")
    page = agent.get("/tasks")
    assert page.status_code == 200
    assert _rows(page.text) == [str(t["id"]) for t in api["tasks"]]
    assert "1 urgent" in page.text and "1 high" in page.text and "Hand-offs" in page.text
    urgent = agent.get("/tasks", params={"priority": "urgent"})
    assert _rows(urgent.text) == [str(api["tasks"][0]["id"])]
    first = api["tasks"][0]["id"]
    forged = agent.post(f"/tasks/{first}/close", data={"status": "done", "csrf_token": "nope"})
    assert forged.status_code == 403
    done = agent.post(
        f"/tasks/{first}/close", data={"status": "done", "csrf_token": form_value(page.text, "csrf_token")}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/tasks?done={first}"
    after = agent.get("/tasks")
    assert str(first) not in _rows(after.text)
    again = agent.post(
        f"/tasks/{first}/close", data={"status": "done", "csrf_token": form_value(after.text, "csrf_token")}
    )
    assert again.status_code == 409
    closed = agent.get("/tasks", params={"status": "done"})
    assert _rows(closed.text) == [str(first)]
    with server.engine.connect() as conn:
        actor = conn.execute(
            sa.select(audit_log.c.actor).where(audit_log.c.action == "task.close")
        ).scalar_one()
    assert actor.startswith("key:")


def test_an_analyst_sees_the_queue_but_cannot_close(server: Server, clients: Clients) -> None:
    _seed(server)
    analyst = clients.sign_in("analyst")
    page = analyst.get("/tasks")
    assert page.status_code == 200 and len(_rows(page.text)) == 3
    assert 'action="/tasks/' not in page.text  # no close buttons
    some = _rows(page.text)[0]
    answer = analyst.post(f"/tasks/{some}/close", data={"csrf_token": form_value(page.text, "csrf_token")})
    assert answer.status_code == 403
    bad = analyst.get("/tasks", params={"priority": "asap"})
    assert bad.status_code == 422 and "priority: &#39;asap&#39; is not one of" in bad.text

"""The automation pages (workflows, broadcasts) and the customer page's automation sections
over real HTTP on SQLite and PostgreSQL: the numbers equal the API's, roles and CSRF hold, and
bad input is answered in place."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dashboard_helpers import Clients, elements, form_value, one, seed
from service_helpers import Server, post_events

from rfmflow.automation.settings import AutomationSettings
from rfmflow.automation.worker import decide
from rfmflow.service.db.tables import outbox, tasks
from rfmflow.service.settings import Settings

WORKFLOW = "dash-win-back"
CONFIRM_ABOVE = 5


@pytest.fixture
def settings(database: Any, tmp_path: Path) -> Settings:
    """The service settings with a small broadcast confirmation size."""
    made: Settings = database.settings(tmp_path, broadcast_confirm_above=CONFIRM_ABOVE)
    return made


def workflow_body(segment: str, name: str = WORKFLOW) -> dict[str, Any]:
    return {
        "name": name,
        "description": "dashboard test",
        "trigger": {"entered_segment": segment},
        "entry": "existing",
        "goal": {"event": "purchase", "within": "7d"},
        "steps": [
            {"id": "pick", "split": {"branches": [{"next": "offer", "weight": 1}], "holdout": 1}},
            {"id": "offer", "send": {"channel": "email", "subject": "Hi", "text": "Hi {{ first_name }}"}},
            {
                "id": "call",
                "handoff": {"queue": "support", "note": "call {{ customer_id }}", "priority": "high"},
            },
        ],
    }


def seed_automation(server: Server, clients: Clients) -> dict[str, Any]:
    """Demo data, a workflow with a holdout split enrolled and run once (outbox rows, tasks),
    some messages marked delivered and clicked, a purchase after enrolling, and a broadcast."""
    seed(server)
    api = clients.api("admin")
    segments = api.get("/v1/segments").json()["segments"]
    segment = max(segments, key=lambda s: s["customers"])["name"]
    assert api.post("/v1/workflows", json=workflow_body(segment)).status_code == 201
    activated = api.post(f"/v1/workflows/{WORKFLOW}/activate")
    assert activated.status_code == 200 and activated.json()["enrolled"] > 0, activated.text
    decide(server.engine, server.settings, AutomationSettings())
    now = datetime.now(UTC)
    with server.engine.begin() as conn:
        ids = [
            r.id
            for r in conn.execute(
                sa.select(outbox.c.id).where(outbox.c.workflow_id.is_not(None)).order_by(outbox.c.id)
            )
        ]
        assert ids, "the workflow decided no message"
        conn.execute(
            sa.update(outbox).where(outbox.c.id.in_(ids[::2])).values(status="delivered", sent_at=now)
        )
        conn.execute(sa.update(outbox).where(outbox.c.id.in_(ids[::4])).values(clicked_at=now))
        conn.execute(sa.update(outbox).where(outbox.c.id == ids[1]).values(status="failed", sent_at=now))
        buyer = conn.execute(sa.select(outbox.c.customer_id).where(outbox.c.id == ids[0])).scalar_one()
    post_events(
        server,
        [
            {
                "event_id": "after-offer",
                "customer_id": buyer,
                "type": "purchase",
                "occurred_at": now.isoformat(),
                "amount": "42.50",
                "order_id": "after-offer",
            }
        ],
    )
    created = api.post(
        "/v1/broadcasts",
        json={
            "name": "spring sale",
            "channel": "email",
            "message": {"subject": "Spring", "text": "Hello {{ first_name }}"},
            "audience": {"segment": [segment]},
        },
    )
    assert created.status_code == 201, created.text
    bid = created.json()["id"]
    count = api.get(f"/v1/broadcasts/{bid}/preview").json()["audience"]
    started = api.post(f"/v1/broadcasts/{bid}/start", json={"confirm_count": count})
    assert started.status_code == 200, started.text
    with server.engine.begin() as conn:
        rows = [r.id for r in conn.execute(sa.select(outbox.c.id).where(outbox.c.broadcast_id == bid))]
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id.in_(rows[::3]), outbox.c.status == "pending")
            .values(status="delivered", sent_at=now)
        )
    return {"segment": segment, "buyer": buyer, "broadcast": bid}


@pytest.fixture
def automated(server: Server, clients: Clients) -> dict[str, Any]:
    return seed_automation(server, clients)


def _cells(html: str, table_id: str) -> dict[str, dict[str, str]]:
    """``data-row`` -> ``data-field`` -> text, for one table of the page."""
    table = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    out: dict[str, dict[str, str]] = {}
    for row in re.findall(r"<tr data-row=\"([^\"]*)\">(.*?)</tr>", table, flags=re.S):
        out[row[0]] = {e["data-field"]: e["text"].strip() for e in elements(row[1], "td", data_field=None)}
    return out


def _count(value: int) -> str:
    return f"{value:,}"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _same(shown: dict[str, str], api: dict[str, Any], enrolments: bool = True) -> None:
    fields = ["sent", "delivered", "failed", "blocked", "clicked", "replied", "converted"]
    if enrolments:
        fields.append("enrolled")
    for name in fields:
        assert shown[name] == _count(api[name]), (name, shown, api)
    assert shown["conversion_rate"] == _rate(api["conversion_rate"])
    assert shown["revenue"].startswith(f"{float(api['revenue']):,.2f}")


def test_workflow_pages_show_the_api_numbers(automated: dict[str, Any], clients: Clients) -> None:
    api = clients.api("analyst")
    analyst = clients.sign_in("analyst")
    listed = {w["name"]: w for w in api.get("/v1/workflows").json()["workflows"]}
    results = api.get(f"/v1/workflows/{WORKFLOW}/results").json()
    assert results["totals"]["converted"] >= 1 and results["totals"]["clicked"] >= 1

    page = analyst.get("/workflows")
    assert page.status_code == 200, page.text
    row = one(page.text, "tr", data_workflow=WORKFLOW)
    assert "Workflows" in [a["text"] for a in elements(page.text, "a") if a.get("href") == "/workflows"]
    row_html = page.text.split(f'data-workflow="{WORKFLOW}"', 1)[1].split("</tr>", 1)[0]
    cells = {e["data-field"]: e["text"] for e in elements(row_html, "td", data_field=None)}
    counts = listed[WORKFLOW]["enrolments"]
    assert cells["enrolled"] == _count(sum(counts.values()))
    assert cells["active"] == _count(counts.get("active", 0))
    for name in ("converted", "sent", "failed"):
        assert cells[name] == _count(results["totals"][name])
    assert cells["conversion_rate"] == _rate(results["totals"]["conversion_rate"])
    assert row["data-workflow"] == WORKFLOW

    detail = analyst.get(f"/workflows/{WORKFLOW}")
    assert detail.status_code == 200, detail.text
    by_segment = _cells(detail.text, "by-segment")
    assert set(by_segment) == {*results["by_segment"], "(total)"}
    for seg, values in results["by_segment"].items():
        _same(by_segment[seg], values)
    _same(by_segment["(total)"], results["totals"])
    by_step = _cells(detail.text, "by-step")
    assert set(by_step) == {s["step"] for s in results["steps"]}
    for step in results["steps"]:
        _same(by_step[step["step"]], step["totals"])
    splits = _cells(detail.text, "splits")
    for branch, values in results["splits"]["branches"].items():
        assert splits[branch]["enrolled"] == _count(values["enrolled"])
        assert splits[branch]["converted"] == _count(values["converted"])
    lift = one(detail.text, id="lift")
    assert "points" in lift["text"] or results["splits"]["lift"] is None
    # the bar chart: one bar per segment and measure, with the table's numbers
    bars = elements(detail.text, "g", data_measure="enrolled")
    assert {
        b["data-group"]: int(b["data-value"]) for b in bars if b["data-group"] in results["by_segment"]
    } == {seg: v["enrolled"] for seg, v in results["by_segment"].items()}
    # read only for the analyst: no buttons, the YAML as text
    assert 'id="pause-button"' not in detail.text and 'id="workflow-yaml"' in detail.text

    # an attribution window like the API's, and a bad one named in place
    week = analyst.get(f"/workflows/{WORKFLOW}?window=1d")
    assert _cells(week.text, "by-segment")["(total)"]["converted"] == _count(
        api.get(f"/v1/workflows/{WORKFLOW}/results?window=1d").json()["totals"]["converted"]
    )
    bad = analyst.get(f"/workflows/{WORKFLOW}?window=soon")
    assert bad.status_code == 422 and "window-error" in bad.text
    assert analyst.get("/workflows/no-such-workflow").status_code == 404


def test_workflow_buttons_roles_and_csrf(automated: dict[str, Any], clients: Clients) -> None:
    api = clients.api("admin")
    admin, analyst, agent = clients.sign_in("admin"), clients.sign_in("analyst"), clients.sign_in("agent")

    def status() -> str:
        found: str = api.get(f"/v1/workflows/{WORKFLOW}").json()["status"]
        return found

    # an agent sees neither the list nor the link; an analyst sees but cannot change
    assert agent.get("/workflows").status_code == 403
    assert 'href="/workflows"' not in agent.get("/customers").text
    token = form_value(analyst.get(f"/workflows/{WORKFLOW}").text, "csrf_token")
    refused = analyst.post(f"/workflows/{WORKFLOW}/status", data={"csrf_token": token, "action": "pause"})
    assert refused.status_code == 403 and "admin only" in refused.text
    assert status() == "active"
    # CSRF: missing or wrong token changes nothing
    for data in ({"action": "pause"}, {"action": "pause", "csrf_token": "forged"}):
        assert admin.post(f"/workflows/{WORKFLOW}/status", data=data).status_code == 403
    assert status() == "active"

    token = form_value(admin.get(f"/workflows/{WORKFLOW}").text, "csrf_token")
    paused = admin.post(f"/workflows/{WORKFLOW}/status", data={"csrf_token": token, "action": "pause"})
    assert paused.status_code == 303 and paused.headers["location"] == f"/workflows/{WORKFLOW}?done=pause"
    assert status() == "paused"
    page = admin.get(paused.headers["location"])
    assert one(page.text, id="notice")["text"] == "workflow paused" and 'id="resume-button"' in page.text
    again = admin.post(f"/workflows/{WORKFLOW}/status", data={"csrf_token": token, "action": "pause"})
    assert again.status_code == 409 and "only an active workflow can be paused" in again.text
    bad = admin.post(f"/workflows/{WORKFLOW}/status", data={"csrf_token": token, "action": "explode"})
    assert bad.status_code == 422 and "action: must be one of" in bad.text
    resumed = admin.post(f"/workflows/{WORKFLOW}/status", data={"csrf_token": token, "action": "resume"})
    assert resumed.status_code == 303 and status() == "active"
    wrong = admin.post(f"/workflows/{WORKFLOW}/status", data={"csrf_token": token, "action": "resume"})
    assert wrong.status_code == 409 and "only a paused workflow can be resumed" in wrong.text
    stopped = admin.post(f"/workflows/{WORKFLOW}/status", data={"csrf_token": token, "action": "stop"})
    assert stopped.status_code == 303 and status() == "stopped"
    assert api.get(f"/v1/workflows/{WORKFLOW}").json()["enrolments"].get("active", 0) == 0
    missing = admin.post("/workflows/nothing-here/status", data={"csrf_token": token, "action": "stop"})
    assert missing.status_code == 404


def test_new_workflow_from_a_template_and_editing(server: Server, clients: Clients) -> None:
    seed(server)
    api = clients.api("admin")
    admin = clients.sign_in("admin")
    assert clients.sign_in("analyst").get("/workflows/new").status_code == 403
    picker = admin.get("/workflows/new")
    assert picker.status_code == 200
    names = {a["data-template"] for a in elements(picker.text, "a", data_template=None)}
    assert names == {t["name"] for t in api.get("/v1/workflows/templates").json()["templates"]}
    chosen = admin.get("/workflows/new?template=vip-welcome")
    text = one(chosen.text, "textarea", id="yaml")["text"]
    assert "name: vip-welcome" in text
    token = form_value(chosen.text, "csrf_token")
    assert admin.get("/workflows/new?template=nope").status_code == 404

    # a broken step is named with its line, the text kept as typed
    broken = text.replace("channel: telegram", "channel: sms", 1)
    answer = admin.post("/workflows/new", data={"csrf_token": token, "yaml": broken, "action": "save"})
    assert answer.status_code == 422, answer.text
    problem = elements(answer.text, "li", data_line=None)[0]
    line = int(problem["data-line"])
    assert "sms" in broken.splitlines()[line - 1] and "unknown channel 'sms'" in problem["text"]
    assert "channel: sms" in one(answer.text, "textarea", id="yaml")["text"]
    assert api.get("/v1/workflows").json()["workflows"] == []
    no_csrf = admin.post("/workflows/new", data={"yaml": text, "action": "activate"})
    assert no_csrf.status_code == 403 and api.get("/v1/workflows").json()["workflows"] == []

    made = admin.post("/workflows/new", data={"csrf_token": token, "yaml": text, "action": "activate"})
    assert made.status_code == 303 and made.headers["location"] == "/workflows/vip-welcome?done=activate"
    assert api.get("/v1/workflows/vip-welcome").json()["status"] == "active"
    twice = admin.post("/workflows/new", data={"csrf_token": token, "yaml": text, "action": "save"})
    assert twice.status_code == 409 and "exists already" in twice.text

    # editing stores a new version; a wrong name or bad YAML is answered in place
    changed = text.replace("description:", "description: Edited.", 1)
    saved = admin.post("/workflows/vip-welcome", data={"csrf_token": token, "yaml": changed})
    assert saved.status_code == 303 and saved.headers["location"].endswith("done=updated")
    assert api.get("/v1/workflows/vip-welcome").json()["version"] == 2
    renamed = admin.post(
        "/workflows/vip-welcome", data={"csrf_token": token, "yaml": changed.replace("vip-welcome", "x")}
    )
    assert renamed.status_code == 422 and "this page edits" in renamed.text
    unparsable = admin.post("/workflows/vip-welcome", data={"csrf_token": token, "yaml": "name: [unclosed"})
    assert unparsable.status_code == 422 and 'id="problems"' in unparsable.text
    assert api.get("/v1/workflows/vip-welcome").json()["version"] == 2


def test_broadcast_pages_results_and_controls(automated: dict[str, Any], clients: Clients) -> None:
    api = clients.api("admin")
    admin, analyst = clients.sign_in("admin"), clients.sign_in("analyst")
    bid, segment = automated["broadcast"], automated["segment"]

    listed = admin.get("/broadcasts")
    assert listed.status_code == 200
    shown = api.get(f"/v1/broadcasts/{bid}").json()
    row_html = listed.text.split(f'data-broadcast="{bid}"', 1)[1].split("</tr>", 1)[0]
    cells = {e["data-field"]: e["text"] for e in elements(row_html, "td", data_field=None)}
    assert cells["audience_count"] == _count(shown["audience_count"])
    assert cells["messages"] == _count(sum(shown["outbox"].values()))
    assert cells["delivered"] == _count(shown["outbox"].get("delivered", 0))

    results = api.get(f"/v1/broadcasts/{bid}/results").json()
    page = analyst.get(f"/broadcasts/{bid}")
    assert page.status_code == 200, page.text
    by_segment = _cells(page.text, "by-segment")
    for seg, values in results["by_segment"].items():
        _same(by_segment[seg], values, enrolments=False)
    _same(by_segment["(total)"], results["totals"], enrolments=False)
    assert 'id="stop-button"' not in page.text  # read only for an analyst
    token = form_value(page.text, "csrf_token")
    assert (
        analyst.post(f"/broadcasts/{bid}/action", data={"csrf_token": token, "action": "stop"}).status_code
        == 403
    )
    assert clients.sign_in("agent").get(f"/broadcasts/{bid}").status_code == 403

    token = form_value(admin.get(f"/broadcasts/{bid}").text, "csrf_token")
    assert admin.post(f"/broadcasts/{bid}/action", data={"action": "pause"}).status_code == 403
    paused = admin.post(f"/broadcasts/{bid}/action", data={"csrf_token": token, "action": "pause"})
    assert paused.status_code == 303 and api.get(f"/v1/broadcasts/{bid}").json()["status"] == "paused"
    resumed = admin.post(f"/broadcasts/{bid}/action", data={"csrf_token": token, "action": "resume"})
    assert resumed.status_code == 303 and api.get(f"/v1/broadcasts/{bid}").json()["status"] == "running"
    pending = api.get(f"/v1/broadcasts/{bid}").json()["outbox"].get("pending", 0)
    assert pending > 0
    stopped = admin.post(f"/broadcasts/{bid}/action", data={"csrf_token": token, "action": "stop"})
    assert stopped.status_code == 303
    after = api.get(f"/v1/broadcasts/{bid}").json()
    assert after["status"] == "stopped" and after["outbox"].get("pending", 0) == 0
    assert after["outbox"]["cancelled"] == pending
    again = admin.post(f"/broadcasts/{bid}/action", data={"csrf_token": token, "action": "pause"})
    assert again.status_code == 409 and "stopped" in one(again.text, id="action-error")["text"]
    assert admin.get("/broadcasts/999999").status_code == 404

    # a new broadcast: the audience counted as the API counts it, then a confirmed start
    form = admin.get("/broadcasts/new")
    assert form.status_code == 200
    data = {
        "csrf_token": token,
        "name": "vip note",
        "channel": "telegram",
        "text": "Hello {{ first_name }}",
        "segment": segment,
        "r_score_min": "1",
        "action": "preview",
    }
    previewed = admin.post("/broadcasts/new", data=data)
    assert previewed.status_code == 200, previewed.text
    expected = api.get(
        "/v1/broadcasts/preview", params={"channel": "telegram", "segment": segment, "r_score_min": 1}
    ).json()
    assert int(one(previewed.text, id="preview-audience")["data-audience"]) == expected["audience"]
    assert int(one(previewed.text, id="preview-reachable")["data-reachable"]) == expected["reachable"]
    assert expected["audience"] > CONFIRM_ABOVE and 'id="needs-confirmation"' in previewed.text
    assert api.get("/v1/broadcasts").json()["items"][0]["id"] == bid  # nothing stored by a preview

    for change, field, status in (
        ({"r_score_min": "x"}, "r_score_min", 422),
        ({"r_score_min": "4", "r_score_max": "2"}, "r_score_min", 422),
        ({"segment": "Nobody"}, "segment", 422),
        ({"channel": "sms"}, "channel", 422),
        ({"action": "create", "text": ""}, "text", 422),
        ({"action": "create", "text": "{{ secret }}"}, "text", 422),
        ({"action": "create", "name": ""}, "name", 422),
    ):
        answer = admin.post("/broadcasts/new", data={**data, **change})
        assert answer.status_code == status, (change, answer.text)
        assert f'id="{field}-error"' in answer.text, (change, answer.text)
    assert api.get("/v1/broadcasts").json()["items"][0]["id"] == bid

    created = admin.post("/broadcasts/new", data={**data, "action": "create"})
    assert created.status_code == 303, created.text
    new_id = int(created.headers["location"].split("/")[2].split("?")[0])
    draft = admin.get(f"/broadcasts/{new_id}")
    assert int(one(draft.text, id="audience-now")["data-audience"]) == expected["audience"]
    unconfirmed = admin.post(f"/broadcasts/{new_id}/action", data={"csrf_token": token, "action": "start"})
    assert unconfirmed.status_code == 409 and "tick the confirmation box" in unconfirmed.text
    assert api.get(f"/v1/broadcasts/{new_id}").json()["status"] == "draft"
    started = admin.post(
        f"/broadcasts/{new_id}/action",
        data={
            "csrf_token": token,
            "action": "start",
            "confirm": "yes",
            "confirm_count": form_value(draft.text, "confirm_count"),
        },
    )
    assert started.status_code == 303
    now = api.get(f"/v1/broadcasts/{new_id}").json()
    assert now["status"] == "running" and sum(now["outbox"].values()) == expected["audience"]


def test_customer_page_automation_sections(
    automated: dict[str, Any], server: Server, clients: Clients
) -> None:
    api = clients.api("admin")
    buyer = automated["buyer"]
    agent, analyst = clients.sign_in("agent"), clients.sign_in("analyst")
    page = agent.get(f"/customers/{buyer}")
    assert page.status_code == 200, page.text
    journeys = elements(page.text, "tr", data_workflow=WORKFLOW)
    assert len(journeys) == 1
    with server.engine.connect() as conn:
        sent = conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.customer_id == buyer)
        ).scalar_one()
        open_tasks = conn.execute(
            sa.select(sa.func.count())
            .select_from(tasks)
            .where(tasks.c.customer_id == buyer, tasks.c.status == "open")
        ).scalar_one()
    assert len(elements(page.text, "tr", data_message=None)) == sent >= 1
    assert len(elements(page.text, "li", data_task=None)) == open_tasks
    assert 'id="predictions"' in page.text

    consent = api.get(f"/v1/customers/{buyer}/consent").json()
    shown = {r["data-channel"]: r["data-status"] for r in elements(page.text, "tr", data_channel=None)}
    assert shown == {c["channel"]: c["status"] for c in consent["consent"]}

    # an agent may opt the customer out (and in again); the history shows both; CSRF enforced
    token = form_value(page.text, "csrf_token")
    assert (
        agent.post(
            f"/customers/{buyer}/consent", data={"channel": "email", "status": "opted_out"}
        ).status_code
        == 403
    )
    out = agent.post(
        f"/customers/{buyer}/consent", data={"csrf_token": token, "channel": "email", "status": "opted_out"}
    )
    assert out.status_code == 303
    assert {c["channel"]: c["status"] for c in api.get(f"/v1/customers/{buyer}/consent").json()["consent"]}[
        "email"
    ] == "opted_out"
    back = agent.post(
        f"/customers/{buyer}/consent", data={"csrf_token": token, "channel": "email", "status": "opted_in"}
    )
    assert back.status_code == 303
    history = api.get(f"/v1/customers/{buyer}/consent").json()["history"]
    assert [h["status"] for h in history[:2]] == ["opted_in", "opted_out"]
    page = agent.get(f"/customers/{buyer}")
    listed = page.text.split('id="consent-history"', 1)[1].split("</details>", 1)[0]
    assert len(elements(listed, "li")) == len(history)
    bad = agent.post(
        f"/customers/{buyer}/consent", data={"csrf_token": token, "channel": "sms", "status": "opted_out"}
    )
    assert bad.status_code == 422 and "channel: expected one of" in bad.text
    # an analyst reads consent but has no buttons and may not change it
    read = analyst.get(f"/customers/{buyer}")
    assert 'id="opt-out-email"' not in read.text
    token = form_value(read.text, "csrf_token")
    refused = analyst.post(
        f"/customers/{buyer}/consent", data={"csrf_token": token, "channel": "email", "status": "opted_out"}
    )
    assert refused.status_code == 403

"""Results of a workflow and a broadcast on a hand-built data set (rows written straight into
the tables), compared with numbers worked out by hand, on SQLite and PostgreSQL over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from broadcast_helpers import service_fixtures
from service_helpers import Server

from rfmflow.service.db.tables import broadcasts, enrolments, events, journey_steps, outbox, workflows

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server

T0 = datetime(2026, 1, 10, 12, 0, 0, 250000, tzinfo=UTC)  # a fraction: windows must keep it
S = T0 + timedelta(days=20)
WORKFLOW = """
name: win-back
trigger: {entered_segment: At Risk}
goal: {event: purchase, within: 7d}
steps:
  - id: pick
    split: {branches: [{next: offer, weight: 1}], holdout: 1}
  - id: offer
    send: {channel: email, subject: Hi, text: "Hi {{ first_name }}"}
"""
MINUTE = timedelta(minutes=1)


def _event(customer: str, at: datetime, amount: int | None, kind: str = "purchase") -> dict[str, Any]:
    return {
        "event_id": f"{customer}-{kind}-{at.isoformat()}",
        "customer_id": customer,
        "event_type": kind,
        "occurred_at": at,
        "received_at": at,
        "day": (at.date() - datetime(1970, 1, 1).date()).days,
        "amount_minor": amount,
        "currency": "USD" if amount is not None else None,
        "source": "api",
    }


def _enrolment(
    id_: int, workflow_id: int, customer: str, segment: str, branch: str, status: str
) -> dict[str, Any]:
    return {
        "id": id_,
        "workflow_id": workflow_id,
        "workflow_version": 1,
        "customer_id": customer,
        "status": status,
        "parked": False,
        "steps_taken": 2,
        "branch": branch,
        "segment": segment,
        "cause": f"test:{id_}",
        "enrolled_at": T0,
    }


def _message(key: str, customer: str, segment: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "dedupe_key": key,
        "customer_id": customer,
        "channel": "email",
        "message": {"text": "hi"},
        "status": status,
        "attempts": 1,
        "not_before": T0,
        "created_at": T0,
        "segment": segment,
        **dict.fromkeys(
            (
                "sent_at",
                "clicked_at",
                "replied_at",
                "workflow_id",
                "enrolment_id",
                "step",
                "broadcast_id",
                "reason",
            )
        ),
        **extra,
    }


def _seed(server: Server) -> int:
    """A workflow with a split (treated: e1-e3, holdout: e4-e6), its steps and messages; a
    broadcast with five messages; purchases in and out of the windows."""
    with server.engine.begin() as conn:
        wid = conn.execute(
            sa.insert(workflows)
            .values(
                name="win-back",
                version=1,
                yaml=WORKFLOW,
                status="active",
                created_at=T0,
                created_by="test",
                updated_at=T0,
                activated_at=T0,
            )
            .returning(workflows.c.id)
        ).scalar_one()
        other = conn.execute(
            sa.insert(workflows)
            .values(
                name="other",
                version=1,
                yaml=WORKFLOW.replace("win-back", "other"),
                status="active",
                created_at=T0,
                created_by="test",
                updated_at=T0,
            )
            .returning(workflows.c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(enrolments),
            [
                _enrolment(1, wid, "c1", "At Risk", "offer", "completed"),
                _enrolment(2, wid, "c2", "At Risk", "offer", "completed"),
                _enrolment(3, wid, "c3", "Loyal", "offer", "converted"),
                _enrolment(4, wid, "c4", "Loyal", "holdout", "holdout"),
                _enrolment(5, wid, "c5", "At Risk", "holdout", "holdout"),
                _enrolment(6, wid, "c6", "At Risk", "holdout", "holdout"),
                _enrolment(7, other, "c1", "At Risk", "offer", "completed"),  # another workflow's
            ],
        )
        steps = [(e, "pick", "split", "offer" if e <= 3 else "holdout") for e in range(1, 7)]
        steps += [(e, "offer", "send", "") for e in (1, 2, 3)] + [(1, "offer", "send", "again")]
        steps += [(7, "offer", "send", "")]
        conn.execute(
            sa.insert(journey_steps),
            [
                {
                    "enrolment_id": e,
                    "workflow_id": other if e == 7 else wid,
                    "step": s,
                    "kind": k,
                    "outcome": o,
                    "at": T0,
                }
                for e, s, k, o in steps
            ],
        )
        bid = conn.execute(
            sa.insert(broadcasts)
            .values(
                name="sale",
                channel="email",
                message={"text": "hi"},
                audience={},
                status="running",
                cap_policy="skip",
                created_at=T0,
                created_by="test",
                started_at=T0,
            )
            .returning(broadcasts.c.id)
        ).scalar_one()
        sent = T0 + MINUTE
        conn.execute(
            sa.insert(outbox),
            [
                _message(
                    "w1",
                    "c1",
                    "At Risk",
                    "delivered",
                    workflow_id=wid,
                    enrolment_id=1,
                    step="offer",
                    sent_at=sent,
                    clicked_at=T0 + timedelta(hours=1),
                ),
                _message(
                    "w2",
                    "c2",
                    "At Risk",
                    "blocked",
                    workflow_id=wid,
                    enrolment_id=2,
                    step="offer",
                    sent_at=sent,
                ),
                _message(
                    "w3",
                    "c3",
                    "Loyal",
                    "delivered",
                    workflow_id=wid,
                    enrolment_id=3,
                    step="offer",
                    sent_at=sent,
                    replied_at=T0 + timedelta(hours=2),
                ),
                _message("w7", "c1", "At Risk", "delivered", workflow_id=other, enrolment_id=7, step="offer"),
                _message(
                    "b1", "d1", "Champions", "delivered", broadcast_id=bid, sent_at=S, clicked_at=S + MINUTE
                ),
                _message("b2", "d2", "Champions", "failed", broadcast_id=bid, sent_at=S),
                _message("b3", "d3", "Loyal", "pending", broadcast_id=bid),
                _message("b4", "d4", "Loyal", "skipped", broadcast_id=bid, reason="opted out of email"),
                _message(
                    "b5", "d5", "Loyal", "delivered", broadcast_id=bid, sent_at=S, replied_at=S + MINUTE
                ),
            ],
        )
        conn.execute(
            sa.insert(events),
            [
                _event("c1", T0 + timedelta(days=2), 10000),  # in
                _event("c1", T0 + timedelta(days=8), 5000),  # after the 7 days
                _event("c3", T0 - timedelta(hours=1), 3000),  # before enrolment
                _event("c3", T0 + timedelta(days=7) - timedelta(microseconds=1), 2000),  # last moment in
                _event("c3", T0 + timedelta(days=7), 500),  # the window's end is excluded
                _event("c4", T0 + timedelta(days=1), 4000),  # holdout, converted
                _event("c6", T0 + timedelta(days=1), None, "visit"),  # not a purchase
                _event("d1", S + timedelta(days=1), 1234),
                _event("d1", S + timedelta(days=8), 100),  # after the broadcast's 7 days
                _event("d2", S + timedelta(hours=1), 500),  # its message failed: not attributed
                _event("d3", S + timedelta(hours=1), 900),  # never sent
                _event("d5", S - timedelta(days=1), 700),  # before the message
                _event("d5", S, -200, "refund"),  # refunds are not purchases
            ],
        )
    return int(bid)


ZERO_MESSAGES = dict.fromkeys(
    (
        "messages",
        "sent",
        "delivered",
        "failed",
        "blocked",
        "skipped",
        "cancelled",
        "unknown",
        "waiting",
        "clicked",
        "replied",
    ),
    0,
)


def _counts(enrolled: int, converted: int, revenue: str, **messages: int) -> dict[str, Any]:
    return {
        "enrolled": enrolled,
        "converted": converted,
        "revenue": revenue,
        "conversion_rate": round(converted / enrolled, 6) if enrolled else None,
        **ZERO_MESSAGES,
        **messages,
    }


def test_workflow_results_by_step_and_segment_with_holdout_lift(server: Server) -> None:
    _seed(server)
    with server.client("analyst") as analyst:
        answer = analyst.get("/v1/workflows/win-back/results")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["goal_event"] == "purchase" and body["window_days"] == 7
    at_risk = _counts(4, 1, "100.00", messages=2, sent=2, delivered=1, blocked=1, clicked=1)
    loyal = _counts(2, 2, "60.00", messages=1, sent=1, delivered=1, replied=1)
    assert body["by_segment"] == {"At Risk": at_risk, "Loyal": loyal}
    assert body["totals"] == _counts(
        6, 3, "160.00", messages=3, sent=3, delivered=2, blocked=1, clicked=1, replied=1
    )

    steps = {s["step"]: s for s in body["steps"]}
    assert steps["pick"]["kind"] == "split"
    assert steps["pick"]["totals"] == _counts(6, 3, "160.00")
    assert steps["pick"]["by_segment"] == {
        "At Risk": _counts(4, 1, "100.00"),
        "Loyal": _counts(2, 2, "60.00"),
    }
    assert steps["offer"]["totals"] == _counts(
        3, 2, "120.00", messages=3, sent=3, delivered=2, blocked=1, clicked=1, replied=1
    )
    assert steps["offer"]["by_segment"] == {
        "At Risk": _counts(2, 1, "100.00", messages=2, sent=2, delivered=1, blocked=1, clicked=1),
        "Loyal": _counts(1, 1, "20.00", messages=1, sent=1, delivered=1, replied=1),
    }

    splits = body["splits"]
    assert splits["treated"] == {
        "enrolled": 3,
        "converted": 2,
        "revenue": "120.00",
        "conversion_rate": 0.666667,
    }
    assert splits["holdout"] == {
        "enrolled": 3,
        "converted": 1,
        "revenue": "40.00",
        "conversion_rate": 0.333333,
    }
    assert splits["lift"] == pytest.approx(1 / 3, abs=1e-6) and splits["relative_lift"] == 1.0
    assert set(splits["branches"]) == {"offer", "holdout"}


def test_a_longer_window_counts_later_purchases(server: Server) -> None:
    _seed(server)
    with server.client("admin") as admin:
        body = admin.get("/v1/workflows/win-back/results", params={"window": "2w"}).json()
        # c1's second purchase (day 8, 50.00) and c3's at exactly day 7 (5.00) now count
        assert body["totals"]["revenue"] == "215.00" and body["window_days"] == 14
        bad = admin.get("/v1/workflows/win-back/results", params={"window": "soon"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "window"]
        assert admin.get("/v1/workflows/nope/results").status_code == 404
    with server.client("agent") as agent:
        assert agent.get("/v1/workflows/win-back/results").status_code == 403


def test_broadcast_results_by_segment(server: Server) -> None:
    bid = _seed(server)
    with server.client("analyst") as analyst:
        answer = analyst.get(f"/v1/broadcasts/{bid}/results")
        assert analyst.get("/v1/broadcasts/999/results").status_code == 404
    assert answer.status_code == 200, answer.text
    body = answer.json()
    champions = {
        **ZERO_MESSAGES,
        "messages": 2,
        "sent": 2,
        "delivered": 1,
        "failed": 1,
        "clicked": 1,
        "converted": 1,
        "revenue": "12.34",
        "conversion_rate": 1.0,
    }
    loyal = {
        **ZERO_MESSAGES,
        "messages": 3,
        "sent": 1,
        "delivered": 1,
        "skipped": 1,
        "waiting": 1,
        "replied": 1,
        "converted": 0,
        "revenue": "0.00",
        "conversion_rate": 0.0,
    }
    assert body["by_segment"] == {"Champions": champions, "Loyal": loyal}
    assert body["totals"] == {
        **ZERO_MESSAGES,
        "messages": 5,
        "sent": 3,
        "delivered": 2,
        "failed": 1,
        "skipped": 1,
        "waiting": 1,
        "clicked": 1,
        "replied": 1,
        "converted": 1,
        "revenue": "12.34",
        "conversion_rate": 0.5,
    }

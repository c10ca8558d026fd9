"""Workflow conditions read the service's stored predictions (churn risk, p_alive, clv), on
SQLite and PostgreSQL: a branch on ``churn_risk`` sends each customer down the right path."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from engine_helpers import automation_settings, decide_now, rows, service_fixtures
from service_helpers import Server, post_events

from rfmflow.service.db.engine import write_transaction
from rfmflow.service.db.tables import customer_predictions

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server

WORKFLOW = """\
name: keep-them
trigger: {event: purchase}
steps:
  - id: check
    branch:
      if: "churn_risk == 'high' and p_alive < 0.3"
      then: rescue
      else: thank
  - id: rescue
    handoff:
      {queue: retention, note: "{{ customer_id }} may leave (clv {{ clv }})", priority: urgent, notify: false}
    next: end
  - id: thank
    handoff: {queue: thanks, note: "thank {{ customer_id }}", priority: low, notify: false}
"""


def test_a_branch_reads_the_stored_predictions(server: Server) -> None:
    now = datetime.now(UTC)
    with write_transaction(server.engine) as conn:
        for cid, risk, p_alive in (("risky", "high", 0.12), ("fine", "low", 0.93)):
            conn.execute(
                sa.insert(customer_predictions).values(
                    customer_id=cid,
                    fit_id=1,
                    p_alive=p_alive,
                    expected_purchases=0.4,
                    expected_spend_minor=2500,
                    clv_minor=12345,
                    churn_risk=risk,
                    days_to_next_purchase=None,
                    predicted_at=now,
                )
            )
    with server.client("admin") as admin:
        assert admin.post("/v1/workflows", json={"yaml": WORKFLOW}).status_code == 201
        assert admin.post("/v1/workflows/keep-them/activate").status_code == 200
    post_events(
        server,
        [
            {
                "event_id": f"p-{cid}",
                "customer_id": cid,
                "type": "purchase",
                "occurred_at": datetime.now(UTC).isoformat(),  # after the activation
                "amount": "20",
                "order_id": f"o-{cid}",
            }
            for cid in ("risky", "fine", "unknown")
        ],
    )
    decide_now(server.engine, server.settings, automation_settings())
    got = {
        r.customer_id: (r.queue, r.note)
        for r in rows(server.engine, "SELECT customer_id, queue, note FROM tasks")
    }
    assert got == {
        "risky": ("retention", "risky may leave (clv 123.45)"),
        "fine": ("thanks", "thank fine"),
        "unknown": ("thanks", "thank unknown"),  # no prediction: the condition does not hold
    }

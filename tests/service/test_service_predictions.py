"""Predictions in the service: fitted on the stored events, equal to ``rfmflow predict`` on the
same events, stored per customer with a per-segment summary, over HTTP and the CLI."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from service_helpers import Database, Server, count_rows, shop_purchases
from sqlalchemy.engine import Engine

import rfmflow
from rfmflow.cli.main import main
from rfmflow.service.db.tables import customer_predictions, customer_scores, prediction_fits
from rfmflow.service.demo_data import demo_table, load_demo
from rfmflow.service.predictions import fit_predictions, latest_fit
from rfmflow.service.scoring_jobs import run_now
from rfmflow.service.settings import Settings

TODAY = date(2026, 11, 23)
CUSTOMERS = 300


@pytest.fixture
def demo(engine: Engine, settings: Settings) -> Engine:
    load_demo(engine, settings, today=TODAY, customers=CUSTOMERS)
    run_now(engine, settings, trigger="cli", now=datetime(2026, 11, 23, 12, tzinfo=UTC))
    return engine


def test_fit_equals_rfmflow_predict_on_the_same_events(demo: Engine, settings: Settings) -> None:
    result = fit_predictions(demo, settings)
    assert result.status == "done", result.error
    expected = rfmflow.predict(
        demo_table(TODAY, customers=CUSTOMERS),
        as_of=TODAY,
        penalizer=result.params["penalizer"],
    ).customers
    want = {r["customer_id"]: r for r in expected.to_pylist()}
    with demo.connect() as conn:
        got = {r.customer_id: r for r in conn.execute(sa.select(customer_predictions))}
    assert set(got) == set(want) and len(got) == result.customers > 0
    for cid, row in got.items():
        w = want[cid]
        assert row.p_alive == pytest.approx(w["p_alive"], abs=1e-6), cid
        assert row.expected_purchases == pytest.approx(w["expected_purchases"], abs=1e-6), cid
        assert row.churn_risk == w["churn_risk"], cid
        if w["clv"] is None:
            assert row.clv_minor is None
        else:
            assert row.clv_minor == pytest.approx(w["clv"] * 100, abs=1), cid
        assert row.days_to_next_purchase == w["days_to_next_purchase"], cid


def test_summary_adds_up_per_segment(demo: Engine, settings: Settings) -> None:
    result = fit_predictions(demo, settings)
    summary = result.summary
    assert (
        sum(summary["churn_counts"].values()) == result.customers == count_rows(demo, "customer_predictions")
    )
    segments = {s["segment"]: s for s in summary["by_segment"]}
    with demo.connect() as conn:
        rows = conn.execute(
            sa.select(
                customer_scores.c.segment, customer_predictions.c.churn_risk, customer_predictions.c.clv_minor
            ).join(customer_predictions, customer_predictions.c.customer_id == customer_scores.c.customer_id)
        ).all()
    for name, seg in segments.items():
        mine = [r for r in rows if r.segment == name]
        assert seg["customers"] == len(mine)
        assert seg["churn"]["high"] == sum(r.churn_risk == "high" for r in mine)
        assert seg["clv_minor"] == sum(r.clv_minor or 0 for r in mine)
    assert sum(s["customers"] for s in segments.values()) == result.customers
    # a customer who never bought (messages only) gets no prediction
    assert "Champions" in segments and segments["Champions"]["expected_revenue_minor"] > 0


def test_a_fit_that_cannot_be_made_is_recorded_and_keeps_the_old_predictions(
    demo: Engine, settings: Settings
) -> None:
    first = fit_predictions(demo, settings)
    assert first.status == "done"
    with demo.begin() as conn:  # purchases gone: nobody to fit on
        conn.execute(sa.text("DELETE FROM events WHERE event_type = 'purchase'"))
    failed = fit_predictions(demo, settings)
    assert failed.status == "failed" and failed.error
    with demo.connect() as conn:
        statuses = [r.status for r in conn.execute(sa.select(prediction_fits).order_by(prediction_fits.c.id))]
        assert statuses == ["done", "failed"]
        assert latest_fit(conn)["id"] == first.fit_id  # type: ignore[index]
    assert count_rows(demo, "customer_predictions") == first.customers


def test_predictions_over_http_and_in_the_customer(server: Server) -> None:
    engine, settings = server.engine, server.settings
    load_demo(engine, settings, today=TODAY, customers=CUSTOMERS)
    run_now(engine, settings, trigger="cli")
    with server.client("analyst") as client:
        assert client.get("/v1/predictions").status_code == 404
        assert client.post("/v1/predictions/fit").status_code == 403  # admin only
    with server.client("admin") as client:
        fit = client.post("/v1/predictions/fit")
        assert fit.status_code == 201, fit.text
        body = fit.json()
        assert body["status"] == "done" and body["params"]["purchase"]["model"] == "mbgnbd"
    with server.client("analyst") as client:
        latest = client.get("/v1/predictions").json()
        assert (
            latest["id"] == body["id"]
            and latest["summary"]["churn_counts"] == body["summary"]["churn_counts"]
        )
        assert [f["id"] for f in client.get("/v1/predictions/fits").json()["fits"]] == [body["id"]]
    with engine.connect() as conn:
        some = conn.execute(sa.select(customer_predictions).limit(1)).one()
    with server.client("agent") as client:
        customer = client.get(f"/v1/customers/{some.customer_id}").json()
    assert customer["predictions"]["p_alive"] == pytest.approx(some.p_alive)
    assert customer["predictions"]["churn_risk"] == some.churn_risk


def test_scheduled_run_fits_after_itself_unless_turned_off(
    database: Database, tmp_path: Path, engine: Engine
) -> None:
    from rfmflow.service.scoring_jobs import ensure_job, parse_schedule, run_due

    schedule = parse_schedule("daily 03:00")
    now = datetime(2026, 11, 23, 4, tzinfo=UTC)
    for on in (False, True):
        settings = database.settings(tmp_path, predictions=on)
        if not on:
            from rfmflow.service.events import EventIn
            from rfmflow.service.ingest import ingest

            ingest(engine, [EventIn.model_validate(e) for e in shop_purchases(now)], settings, source="api")
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM jobs"))
        ensure_job(engine, schedule, settings, now=datetime(2026, 11, 22, 4, tzinfo=UTC))
        assert run_due(engine, settings, schedule, "w1", now=now) is not None
        assert count_rows(engine, "prediction_fits") == (1 if on else 0)


def test_cli_fit_and_show(demo: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFMFLOW_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RFMFLOW_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    empty = runner.invoke(main, ["predictions", "show"])
    assert empty.exit_code == 1 and "no predictions yet" in empty.output
    fitted = runner.invoke(main, ["predictions", "fit"])
    assert fitted.exit_code == 0, fitted.output
    assert f"predicted {count_rows(demo, 'customer_predictions'):,} customers" in fitted.output
    shown = runner.invoke(main, ["predictions", "show"])
    assert shown.exit_code == 0 and "Champions" in shown.output and "CLV" in shown.output


def test_an_empty_database_is_a_failed_fit_with_a_reason(engine: Engine, settings: Settings) -> None:
    result = fit_predictions(engine, settings)
    assert result.status == "failed" and result.error
    with engine.connect() as conn:
        assert latest_fit(conn) is None and latest_fit(conn, done_only=False)["error"] == result.error  # type: ignore[index]


def test_customers_filtered_by_churn_risk(server: Server) -> None:
    engine, settings = server.engine, server.settings
    load_demo(engine, settings, today=TODAY, customers=CUSTOMERS)
    run_now(engine, settings, trigger="cli")
    with server.client("analyst") as client:
        before = client.get("/v1/customers", params={"churn_risk": "high", "total": "exact"})
        assert before.status_code == 200 and before.json()["items"] == []  # nothing fitted yet
    assert fit_predictions(engine, settings).status == "done"
    with engine.connect() as conn:
        query = sa.select(customer_predictions.c.churn_risk, sa.func.count()).group_by(
            customer_predictions.c.churn_risk
        )
        risk = {level: int(n) for level, n in conn.execute(query)}
    with server.client("analyst") as client:
        for level in ("high", "low"):
            body = client.get(
                "/v1/customers", params={"churn_risk": level, "total": "exact", "limit": 500}
            ).json()
            assert body["total"] == risk.get(level, 0) == len(body["items"])
        both = client.get(
            "/v1/customers", params=[("churn_risk", "high"), ("churn_risk", "medium"), ("total", "exact")]
        ).json()
        assert both["total"] == risk.get("high", 0) + risk.get("medium", 0)
        bad = client.get("/v1/customers", params={"churn_risk": "extreme"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "churn_risk"]

"""Snapshots over time and the list of segment moves, after runs on different days, through
real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from customer_helpers import NOW, pages, seed
from service_helpers import Server

from rfmflow.service.db.tables import scoring_runs, segment_transitions
from rfmflow.service.scoring import run_scoring
from rfmflow.service.scoring_live import business_day, day_date


def runs_on_three_days(server: Server) -> list[date]:
    """Runs 150 and 20 days ago (twice on that day) and today; their as-of days."""
    engine, settings = server.engine, server.settings
    seed(server, run=False)
    day1, day2 = NOW - timedelta(days=150), NOW - timedelta(days=20)
    again = day2 + timedelta(seconds=1)
    if business_day(again, settings) != business_day(day2, settings):  # not across midnight
        again = day2 - timedelta(seconds=1)
    for moment in (day1, day2, again, NOW):
        run_scoring(engine, settings, trigger="cli", now=moment)
    return [day_date(business_day(m, settings)) for m in (day1, day2, NOW)]


def stored_runs(server: Server) -> list[dict[str, Any]]:
    with server.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(scoring_runs).order_by(scoring_runs.c.id)).mappings()]


def test_snapshots_per_day_and_per_run(server: Server) -> None:
    days = runs_on_three_days(server)
    runs = stored_runs(server)
    with server.client("analyst") as client:
        per_day = client.get("/v1/snapshots").json()
        per_run = client.get("/v1/snapshots", params={"per": "run"}).json()
    assert per_day["per"] == "day" and per_day["currency"] == "USD"
    assert [s["as_of"] for s in per_day["snapshots"]] == [d.isoformat() for d in days]
    assert [s["run_id"] for s in per_day["snapshots"]] == [runs[0]["id"], runs[2]["id"], runs[3]["id"]]
    assert [s["run_id"] for s in per_run["snapshots"]] == [r["id"] for r in runs]
    for snap, run in zip(per_run["snapshots"], runs, strict=True):
        stats = dict(run["segment_stats"])
        assert [s["segment"] for s in snap["segments"]] == [name for name, _ in run["segment_stats"]]
        assert snap["customers"] == run["customers"] and snap["scheme_version"] == run["scheme_version"]
        assert abs(sum(s["share"] for s in snap["segments"]) - 1) < 1e-9
        revenue = sum(Decimal(s["revenue"]) for s in snap["segments"])
        assert Decimal(snap["revenue"]) == revenue and snap["revenue_minor"] == sum(
            v["revenue_minor"] for v in stats.values()
        )
        for s in snap["segments"]:
            mine = stats[s["segment"]]
            assert s["customers"] == mine["customers"] and s["revenue_minor"] == mine["revenue_minor"]
            assert s["share"] == mine["customers"] / run["customers"]
            assert Decimal(s["revenue"]) == Decimal(mine["revenue_minor"]) / 100
            assert s["mean_recency_days"] == mine["mean_recency_days"]
            assert s["mean_frequency"] == mine["mean_frequency"]
    assert (
        per_run["snapshots"][0]["customers"] < per_run["snapshots"][-1]["customers"]
    )  # more customers later


def test_snapshot_filters_and_runs_made_before_0003(server: Server) -> None:
    days = runs_on_three_days(server)
    with server.client("analyst") as client:

        def snaps(**params: Any) -> list[dict[str, Any]]:
            answer = client.get("/v1/snapshots", params=params)
            assert answer.status_code == 200, answer.text
            found: list[dict[str, Any]] = answer.json()["snapshots"]
            return found

        assert [s["as_of"] for s in snaps(**{"from": days[1].isoformat()})] == [
            days[1].isoformat(),
            days[2].isoformat(),
        ]
        assert [s["as_of"] for s in snaps(to=days[0].isoformat())] == [days[0].isoformat()]
        assert snaps(**{"from": (days[2] + timedelta(days=1)).isoformat()}) == []
        everything = snaps()[-1]
        two = snaps(segment=["Champions", "Lost"])[-1]
        assert [s["segment"] for s in two["segments"]] == [
            s["segment"] for s in everything["segments"] if s["segment"] in ("Champions", "Lost")
        ]
        assert two["customers"] == everything["customers"]  # shares stay shares of everyone

        with server.engine.begin() as conn:  # a run recorded before revision 0003 kept counts only
            first = conn.execute(sa.select(sa.func.min(scoring_runs.c.id))).scalar_one()
            conn.execute(
                sa.update(scoring_runs).where(scoring_runs.c.id == first).values(segment_stats=sa.null())
            )
        old = snaps()[0]
        assert old["revenue"] is None and old["customers"] > 0
        assert all(s["revenue"] is None and s["revenue_share"] is None for s in old["segments"])
        assert all(s["mean_recency_days"] is None for s in old["segments"])
        assert abs(sum(s["share"] for s in old["segments"]) - 1) < 1e-9

        for params, where in (
            ({"from": "2026-02-02", "to": "2026-02-01"}, "from"),
            ({"per": "week"}, "per"),
            ({"from": "soon"}, "from"),
        ):
            bad = client.get("/v1/snapshots", params=params)
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == where
    with server.client("agent") as agent:
        assert agent.get("/v1/snapshots").status_code == 403


def stored_moves(server: Server, after: int, upto: int) -> list[dict[str, Any]]:
    t = segment_transitions.c
    with server.engine.connect() as conn:
        query = sa.select(segment_transitions).where(t.day > after, t.day <= upto).order_by(t.day, t.id)
        return [dict(r) for r in conn.execute(query).mappings()]


def test_moves_between_two_days_page_by_page(server: Server) -> None:
    days = runs_on_three_days(server)
    start = (days[0] - timedelta(days=1)).isoformat()
    with server.client("analyst") as client:
        found = pages(client, "/v1/transitions/moves", {"from": start, "to": days[2].isoformat()}, 7)
        first = client.get("/v1/transitions/moves", params={"from": start, "to": days[2].isoformat()}).json()
        ep = date(1970, 1, 1).toordinal()
        expected = stored_moves(server, days[0].toordinal() - ep - 1, days[2].toordinal() - ep)
        assert [m["id"] for m in found] == [m["id"] for m in expected] and len(found) > 40
        assert first["from"] == start and first["to"] == days[2].isoformat()
        one = found[0]
        assert set(one) == {
            "id",
            "customer_id",
            "from_segment",
            "to_segment",
            "date",
            "at",
            "cause",
            "run_id",
            "scheme_version",
        }
        assert one["from_segment"] == "(none)" and one["cause"] == "run" and datetime.fromisoformat(one["at"])

        def ids(**params: Any) -> list[int]:
            return [m["id"] for m in pages(client, "/v1/transitions/moves", {"from": start, **params}, 50)]

        assert ids(from_segment="(none)") == [m["id"] for m in expected if m["from_segment"] is None]
        later = [m for m in expected if m["from_segment"] is not None]
        assert later, "some customers moved between runs"
        target = later[0]["to_segment"]
        assert ids(to_segment=target) == [m["id"] for m in expected if m["to_segment"] == target]
        assert ids(from_segment=["(none)", later[0]["from_segment"]]) == [
            m["id"] for m in expected if m["from_segment"] in (None, later[0]["from_segment"])
        ]
        assert ids(cause="scheme") == []
        assert ids(customer_id=later[0]["customer_id"]) == [
            m["id"] for m in expected if m["customer_id"] == later[0]["customer_id"]
        ]
        assert ids(**{"from": days[1].isoformat()}) == [
            m["id"] for m in expected if m["day"] > days[1].toordinal() - ep
        ]
        default = client.get("/v1/transitions/moves").json()  # the last 30 days
        assert {m["date"] for m in default["items"]} <= {days[2].isoformat(), days[1].isoformat()}

        for params, where in (
            ({"from": "2026-02-02", "to": "2026-02-01"}, "from"),
            ({"cause": "magic"}, "cause"),
            ({"cursor": "nope!"}, "cursor"),
            ({"limit": 0}, "limit"),
        ):
            bad = client.get("/v1/transitions/moves", params=params)
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == where, bad.text
    with server.client("agent") as agent:
        assert agent.get("/v1/transitions/moves").status_code == 403

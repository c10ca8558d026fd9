"""The runs' summaries the overview reads (R×F grid, segment counts now, moves per period)
give exactly what the direct queries over every score and move give: after runs on several
days, after live re-scores by events, and when older runs have no summary (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from customer_helpers import NOW, seed
from service_helpers import Server

from rfmflow.dashboard.overview_data import rf_grid, segments_now, snapshot_grid
from rfmflow.service import run_summary
from rfmflow.service.db.tables import scoring_runs
from rfmflow.service.scoring import run_scoring, segment_summary
from rfmflow.service.scoring_live import business_day


def _direct_flows(conn: sa.Connection, from_day: int, to_day: int) -> dict[str, dict[str, int]]:
    rows = conn.execute(
        sa.text(
            "SELECT COALESCE(from_segment, '(none)'), to_segment, count(*) FROM segment_transitions "
            "WHERE day > :a AND day <= :b GROUP BY 1, 2"
        ),
        {"a": from_day, "b": to_day},
    ).all()
    out: dict[str, dict[str, int]] = {}
    for src, dst, n in rows:
        out.setdefault(str(src), {})[str(dst)] = int(n)
    return out


def _direct_counts(conn: sa.Connection) -> dict[str, int]:
    rows = conn.execute(sa.text("SELECT segment, count(*) FROM customer_scores GROUP BY segment")).all()
    return {str(s): int(n) for s, n in rows}


def _purchases(server: Server, tag: str, customers: list[str], amount: str = "400.00") -> None:
    events = [
        {
            "event_id": f"{tag}-{cid}",
            "customer_id": cid,
            "type": "purchase",
            "occurred_at": NOW.isoformat(),
            "amount": amount,
        }
        for cid in customers
    ]
    with server.client("ingest") as client:
        sent = client.post("/v1/events", json={"batch": events})
        assert sent.status_code == 200 and sent.json()["rejected"] == 0, sent.text


def _check_all(server: Server, days: list[int]) -> dict[str, Any]:
    with server.engine.connect() as conn:
        snap = run_summary.newest(conn)
        assert snap is not None
        now = run_summary.segment_counts_now(conn, snap)
        assert {k: v for k, v in now.items() if v} == _direct_counts(conn)
        summary, _ = segments_now(conn, server.settings)
        direct = segment_summary(conn, server.settings)
        assert [(s["name"], s["customers"], s["share"]) for s in summary["segments"]] == [
            (s["name"], s["customers"], s["share"]) for s in direct["segments"]
        ]
        assert summary["customers"] == direct["customers"]
        for a in days:
            for b in days:
                if a <= b:
                    flows = run_summary.move_flows(conn, a, b)
                    assert flows["matrix"] == _direct_flows(conn, a, b), (a, b)
                    assert flows["moves"] == sum(n for row in flows["matrix"].values() for n in row.values())
        return summary


def test_summaries_match_the_direct_queries(server: Server) -> None:
    engine, settings = server.engine, server.settings
    seed(server, run=False)
    moments = [NOW - timedelta(days=120), NOW - timedelta(days=40), NOW - timedelta(days=3), NOW]
    days = [business_day(m, settings) for m in moments]
    first = run_scoring(engine, settings, trigger="cli", now=moments[0])
    # an older run without a summary (as runs made before summaries existed)
    with engine.begin() as conn:
        bands = conn.execute(
            sa.select(scoring_runs.c.bands).where(scoring_runs.c.id == first.id)
        ).scalar_one()
        bands = {k: v for k, v in bands.items() if k != run_summary.KEY}
        conn.execute(sa.update(scoring_runs).where(scoring_runs.c.id == first.id).values(bands=bands))
        assert run_summary.newest(conn) is None
        # no summary: the overview falls back to the direct queries
        summary, grid = segments_now(conn, settings)
        assert summary == segment_summary(conn, settings)
        assert grid == rf_grid(conn)
        assert run_summary.move_flows(conn, days[0] - 1, days[-1])["matrix"] == _direct_flows(
            conn, days[0] - 1, days[-1]
        )
    for moment in moments[1:]:
        run_scoring(engine, settings, trigger="cli", now=moment)
    # right after a run the grid and the revenue are the direct ones
    with engine.connect() as conn:
        snap = run_summary.newest(conn)
        assert snap is not None
        assert snapshot_grid(snap) == rf_grid(conn)
        summary, _ = segments_now(conn, settings)
        direct = segment_summary(conn, settings)
        assert summary["segments"] == [
            {**s, "mean_recency_days": _r(s["mean_recency_days"]), "mean_frequency": _r(s["mean_frequency"])}
            for s in direct["segments"]
        ]
    probe = [days[0] - 1, *days]
    _check_all(server, probe)
    # live re-scores by events after the newest run: counts and moves stay exact
    _purchases(server, "live", [f"c{i:02d}" for i in range(0, 40, 3)])
    with engine.connect() as conn:
        causes = dict(
            conn.execute(sa.text("SELECT cause, count(*) FROM segment_transitions GROUP BY cause")).all()
        )
    assert causes.get("event", 0) > 0
    _check_all(server, probe)
    # the next run stores the live moves in its flows
    run_scoring(engine, settings, trigger="cli", now=NOW + timedelta(seconds=5))
    _purchases(server, "again", [f"c{i:02d}" for i in range(1, 40, 4)], amount="900.00")
    _check_all(server, probe)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def test_move_flows_bad_and_empty_periods(server: Server) -> None:
    seed(server)
    today = business_day(NOW, server.settings)
    with server.engine.connect() as conn:
        empty = run_summary.move_flows(conn, today + 1, today + 5)
        assert empty["matrix"] == {} and empty["moves"] == 0
        everything = run_summary.move_flows(conn, today - 1, today)
        assert everything["first_scored"] == everything["moves"] > 0
        assert everything["changed"] == 0


def test_flows_over_http_count_the_listed_moves(server: Server) -> None:
    seed(server, run=False)
    for moment in (NOW - timedelta(days=20), NOW):
        run_scoring(server.engine, server.settings, trigger="cli", now=moment)
    _purchases(server, "http", [f"c{i:02d}" for i in range(0, 40, 5)])
    start = (NOW - timedelta(days=25)).date().isoformat()
    with server.client("analyst") as client:
        flows = client.get("/v1/transitions/flows", params={"from": start})
        assert flows.status_code == 200, flows.text
        body = flows.json()
        listed: dict[str, dict[str, int]] = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"from": start, "limit": 7, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/transitions/moves", params=params).json()
            for move in page["items"]:
                row = listed.setdefault(move["from_segment"], {})
                row[move["to_segment"]] = row.get(move["to_segment"], 0) + 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert body["matrix"] == listed and body["moves"] == sum(sum(r.values()) for r in listed.values())
        assert body["moves_recorded"].get("event", 0) > 0
        bad = client.get("/v1/transitions/flows", params={"from": start, "to_segment": "Champions"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "from_segment"]
        upside = client.get("/v1/transitions/flows", params={"from": "2026-05-02", "to": "2026-05-01"})
        assert upside.status_code == 422 and upside.json()["detail"][0]["loc"] == ["query", "from"]
    with server.client("agent") as agent:
        assert agent.get("/v1/transitions/flows").status_code == 403

"""The overview ``/``: segments now, their trend, the R×F heat map, moves, health warnings;
and ``/moves``, the customers behind one cell of the transition matrix."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from rfmflow.dashboard import charts
from rfmflow.dashboard.overview_data import CHECKS, NONE_SEGMENT, day_number, health, segments_now
from rfmflow.dashboard.web import money_text, query_url, redirect, render, signed_in, svc
from rfmflow.service.customer_search import SearchError
from rfmflow.service.history import MoveFilter, snapshots
from rfmflow.service.history import moves_page as list_moves
from rfmflow.service.predictions import latest_fit
from rfmflow.service.run_summary import move_flows
from rfmflow.service.scoring import list_runs
from rfmflow.service.scoring_live import business_day, day_date
from rfmflow.service.scoring_schemes import active_scheme

DEFAULT_DAYS = 30
"""The default date range: the last 30 days (trend and moves)."""
MEASURES = ("customers", "revenue")
MOVERS_PAGE = 100


def _date_param(value: str | None, name: str, errors: dict[str, str]) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[name] = f"{value!r} is not a date (YYYY-MM-DD)"
        return None


def date_range(request: Request, today: date) -> tuple[date, date, dict[str, str]]:
    """``from``/``to`` of the query (default: the last 30 days to today), with field errors."""
    errors: dict[str, str] = {}
    end = _date_param(request.query_params.get("to"), "to", errors) or today
    start = _date_param(request.query_params.get("from"), "from", errors) or end - timedelta(
        days=DEFAULT_DAYS
    )
    if start > end:
        errors["from"] = f"must not be after 'to' ({start.isoformat()} > {end.isoformat()})"
        start = end - timedelta(days=DEFAULT_DAYS)
    return start, end, errors


def _segment_href(name: str) -> str:
    return query_url("/customers", {"segment": name})


def _predictions(fit: dict[str, Any], decimals: int) -> dict[str, Any]:
    """The newest fit's summary for the page: churn counts, and per segment the churn split
    (a bar whose parts link to the customers), expected revenue and CLV."""
    summary = fit["summary"]

    def money(minor: int) -> str:
        return money_text(Decimal(minor).scaleb(-decimals), decimals)

    rows = []
    for seg in summary["by_segment"]:
        links = {
            level: query_url("/customers", {"segment": seg["segment"], "churn_risk": level})
            for level in ("high", "medium", "low")
        }
        rows.append(
            {
                **seg,
                "links": links,
                "bar": charts.risk_bar(seg["churn"], label=seg["segment"], href=links.__getitem__),
                "expected_revenue": money(seg["expected_revenue_minor"]),
                "clv": money(seg["clv_minor"]),
            }
        )
    return {
        "fit": fit,
        "churn": summary["churn_counts"],
        "rows": rows,
        "horizon_days": summary["horizon_days"],
        "clv_horizon_days": summary["clv_horizon_days"],
        "expected_revenue": money(sum(r["expected_revenue_minor"] for r in summary["by_segment"])),
        "clv": money(sum(r["clv_minor"] for r in summary["by_segment"])),
        "notes": summary.get("notes", []),
    }


def register(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def overview(request: Request) -> Response:
        session = signed_in(request, "customers:read")
        if not session.allows("data:read"):
            return redirect("/customers")  # an agent's start page
        state = svc(request)
        settings = state.settings
        today = day_date(business_day(datetime.now(UTC), settings))
        start, end, errors = date_range(request, today)
        measure = request.query_params.get("measure", "customers")
        if measure not in MEASURES:
            errors["measure"] = f"must be one of {', '.join(MEASURES)}"
            measure = "customers"
        with state.engine.connect() as conn:
            version = active_scheme(conn)
            summary, grid = segments_now(conn, settings)
            history = snapshots(conn, settings, from_day=day_number(start), to_day=day_number(end))
            moves = move_flows(conn, day_number(start), day_number(end))
            newest = list_runs(conn, limit=1)
            fit = latest_fit(conn)
        scheme = version.scheme
        for seg in summary["segments"]:
            seg["href"] = _segment_href(seg["name"])
            seg["bar"] = charts.share_bar(
                seg["share"], seg["revenue_share"], label=seg["name"], href=seg["href"]
            )
        warnings = health(summary, scheme, newest[0] if newest else None, today=today)

        decimals = settings.money_decimals
        r_bins, f_bins = scheme.bins("recency") or 1, scheme.bins("frequency") or 1
        cells = [
            charts.Cell(
                r=c.r,
                f=c.f,
                customers=c.customers,
                revenue=money_text(Decimal(c.revenue_minor).scaleb(-decimals), decimals)
                + f" {settings.currency}",
                value=float(c.customers if measure == "customers" else max(c.revenue_minor, 0)),
                label=charts.short_count(c.customers)
                if measure == "customers"
                else _short_money(c.revenue_minor, decimals),
                segments=c.segments,
            )
            for c in grid
        ]
        heat = charts.heat_map(
            cells,
            r_bins=r_bins,
            f_bins=f_bins,
            measure=measure,
            href=lambda r, f: query_url(
                "/customers", {"r_score_min": r, "r_score_max": r, "f_score_min": f, "f_score_max": f}
            ),
        )
        trend_days = [s["as_of"] for s in history]
        names: list[str] = []
        for snap in history:
            names += [p["segment"] for p in snap["segments"] if p["segment"] not in names]
        order = {seg["name"]: i for i, seg in enumerate(summary["segments"])}
        names.sort(key=lambda n: order.get(n, len(order)))
        colors = {seg["name"]: charts.segment_color(i) for i, seg in enumerate(summary["segments"])}

        def value(part: dict[str, Any]) -> int:
            if measure == "customers":
                return int(part["customers"])
            return max(int(part["revenue_minor"] or 0), 0)

        series = [
            charts.Series(
                name,
                colors.get(name, charts.segment_color(len(colors) + i)),
                [next((value(p) for p in snap["segments"] if p["segment"] == name), 0) for snap in history],
            )
            for i, name in enumerate(names)
        ]
        trend = (
            charts.stacked_area(trend_days, series, label=f"{measure} per segment over time")
            if history
            else None
        )
        matrix = moves["matrix"]
        rows = [n for n in [NONE_SEGMENT, *order] if n in matrix] + sorted(
            set(matrix) - set(order) - {NONE_SEGMENT}
        )
        cols_seen = {dst for row in matrix.values() for dst in row}
        cols = [n for n in order if n in cols_seen] + sorted(cols_seen - set(order))
        start_text, end_text = start.isoformat(), end.isoformat()
        flow = (
            charts.transition_matrix(
                matrix,
                rows,
                cols,
                href=lambda a, b: query_url(
                    "/moves", {"from": start_text, "to": end_text, "from_segment": a, "to_segment": b}
                ),
            )
            if matrix
            else None
        )
        predictions = _predictions(fit, decimals) if fit else None
        return render(
            request,
            "overview.html.j2",
            session=session,
            page="overview",
            title="Overview",
            status=422 if errors else 200,
            errors=errors,
            summary=summary,
            scheme=version,
            warnings=warnings,
            checks=CHECKS,
            heat=heat,
            measure=measure,
            measures=MEASURES,
            trend=trend,
            predictions=predictions,
            legend=[(s.name, s.color, s.values[-1] if s.values else 0) for s in series],
            trend_points=len(history),
            moves=moves,
            flow=flow,
            start=start_text,
            end=end_text,
            money_decimals=decimals,
            revenue_total=Decimal(sum(int(s["revenue_minor"]) for s in summary["segments"])).scaleb(
                -decimals
            ),
            query=lambda **kw: query_url("/", {"from": start_text, "to": end_text, "measure": measure, **kw}),
        )

    @app.get("/moves", include_in_schema=False)
    def moves_page(request: Request) -> Response:
        session = signed_in(request, "data:read")
        state = svc(request)
        today = day_date(business_day(datetime.now(UTC), state.settings))
        start, end, errors = date_range(request, today)
        source = request.query_params.get("from_segment") or ""
        target = request.query_params.get("to_segment") or ""
        after = request.query_params.get("after") or None
        if not source:
            errors["from_segment"] = "give the segment on the first day ((none): not scored yet)"
        if not target:
            errors["to_segment"] = "give the segment on the last day"
        ids: list[str] = []
        rows: list[dict[str, Any]] = []
        more: str | None = None
        cell = 0
        if not errors:
            found = MoveFilter(
                day_number(start), day_number(end), from_segments=(source,), to_segments=(target,)
            )
            with state.engine.connect() as conn:
                try:
                    rows, more = list_moves(conn, found, limit=MOVERS_PAGE, cursor=after)
                except SearchError as exc:
                    errors.update(dict(exc.problems))
                ids = [str(m["customer_id"]) for m in rows]
                cell = (
                    move_flows(conn, day_number(start), day_number(end))["matrix"]
                    .get(source, {})
                    .get(target, 0)
                )
        params = {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "from_segment": source,
            "to_segment": target,
        }
        return render(
            request,
            "moves.html.j2",
            session=session,
            page="overview",
            title="Moves",
            status=422 if errors else 200,
            errors=errors,
            ids=ids,
            total=cell,
            source=source,
            target=target,
            start=start.isoformat(),
            end=end.isoformat(),
            next_url=query_url("/moves", {**params, "after": more}) if more else None,
            first_url=query_url("/moves", params) if after else None,
        )


def _short_money(minor: int, decimals: int) -> str:
    value = Decimal(minor).scaleb(-decimals)
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"

"""Schemes, scoring runs, segments and transitions over HTTP.

============================================  ===================  =========================================
endpoint                                      roles                what
============================================  ===================  =========================================
``GET /v1/scheme``                            admin, analyst       the active scheme version (and history)
``PUT /v1/scheme[?dry_run=true]``             admin                store a new version and re-score everyone;
                                                                   dry run: segment counts, nothing stored
``GET /v1/segments``                          admin, analyst       customers, shares, revenue per segment
``GET /v1/segments/{name}/customers``         admin, analyst,      the segment's customers, cursor-paginated
                                              agent                by customer id
``GET /v1/customers/{id}/scores``             admin, analyst,      scores, segment, segment history; ``?on=``
                                              agent                a date: the segment on that day
``GET /v1/transitions?from=DATE&to=DATE``     admin, analyst       segment on ``from`` x segment on ``to``
``GET /v1/runs``, ``GET /v1/runs/{id}``       admin, analyst       recent runs (counts, distributions, bands)
``POST /v1/runs``                             admin, analyst       run now (409 while a run is in progress)
============================================  ===================  =========================================

``/metrics`` gains ``rfmflow_segment_customers{segment}``, ``rfmflow_scoring_runs`` and
``rfmflow_scoring_last_run_duration_seconds`` (read from the database at scrape time, so runs
made by separate workers count too).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from rfmflow.core.coverage import check_coverage
from rfmflow.core.errors import SchemeError
from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.db.tables import NO_SEGMENT, customer_scores, scoring_runs
from rfmflow.service.scoring import (
    get_run,
    list_runs,
    preview_scheme,
    score_out,
    segment_customers,
    segment_history,
    segment_on,
    segment_summary,
    transition_matrix,
)
from rfmflow.service.scoring_jobs import RunInProgress, job_state, run_now
from rfmflow.service.scoring_live import EPOCH_ORDINAL, business_day
from rfmflow.service.scoring_schemes import (
    MAX_SCHEME_BYTES,
    active_scheme,
    list_versions,
    parse_scheme,
    scheme_error_details,
)

log = logging.getLogger("rfmflow.service.scoring")

SCHEME_WAIT_SECONDS = 30.0
"""``PUT /v1/scheme`` waits this long for a run in progress before answering 409."""
_CONFLICT = {"Retry-After": "5"}


DataReader = Annotated[ApiKey, Depends(require("data:read"))]
CustomerReader = Annotated[ApiKey, Depends(require("customers:read"))]
Admin = Annotated[ApiKey, Depends(require("admin"))]


def _day(value: date) -> int:
    return value.toordinal() - EPOCH_ORDINAL


def _encode_cursor(customer_id: str) -> str:
    return base64.urlsafe_b64encode(customer_id.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
        if not decoded:
            raise ValueError("empty")
        return decoded
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise HTTPException(
            422,
            [{"loc": ["query", "cursor"], "msg": "not a cursor this API returned", "type": "value_error"}],
        ) from None


def _actor(key: ApiKey) -> str:
    return f"key:{key.id}"


async def _scheme_text(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_SCHEME_BYTES:
        raise HTTPException(413, f"the scheme is over {MAX_SCHEME_BYTES // 1024} KB")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(
            422, [{"loc": ["body"], "msg": "the body is not UTF-8 text", "type": "unicode_decode"}]
        ) from None
    if "json" in request.headers.get("content-type", ""):
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as err:
            raise HTTPException(
                422, [{"loc": ["body"], "msg": f"invalid JSON: {err}", "type": "json_invalid"}]
            ) from None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("yaml"), str)
            or set(payload) != {"yaml"}
        ):
            raise HTTPException(
                422,
                [
                    {
                        "loc": ["body", "yaml"],
                        "msg": 'send the scheme as YAML text, or as JSON {"yaml": "<the YAML text>"}',
                        "type": "missing",
                    }
                ],
            )
        text = payload["yaml"]
    if not text.strip():
        raise HTTPException(422, [{"loc": ["body"], "msg": "the scheme is empty", "type": "missing"}])
    return text


class ScoringCollector(Collector):
    """Segment sizes and run figures, read from the database when ``/metrics`` is scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sizes = GaugeMetricFamily(
            "rfmflow_segment_customers", "Customers per segment (stored scores).", labels=["segment"]
        )
        runs = GaugeMetricFamily("rfmflow_scoring_runs", "Scoring runs recorded.")
        last = GaugeMetricFamily(
            "rfmflow_scoring_last_run_duration_seconds", "Duration of the newest scoring run."
        )
        try:
            with self.engine.connect() as conn:
                cs = customer_scores.c
                for segment, n in conn.execute(sa.select(cs.segment, sa.func.count()).group_by(cs.segment)):
                    sizes.add_metric([str(segment)], float(n))
                count = conn.execute(sa.select(sa.func.count()).select_from(scoring_runs)).scalar_one()
                runs.add_metric([], float(count))
                newest = conn.execute(
                    sa.select(scoring_runs.c.duration_ms)
                    .where(scoring_runs.c.finished_at.is_not(None))
                    .order_by(scoring_runs.c.id.desc())
                    .limit(1)
                ).scalar()
                if newest is not None:
                    last.add_metric([], float(newest) / 1000)
        except sa.exc.SQLAlchemyError as err:
            log.warning("scoring metrics unavailable", extra={"error": str(err).splitlines()[0]})
            return
        yield sizes
        yield runs
        yield last

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""
    state = app.state.service
    state.metrics.registry.register(ScoringCollector(state.engine))

    @app.get("/v1/scheme", tags=["scoring"], summary="The active scheme version (role: admin or analyst)")
    def get_scheme(svc: ServiceDep, _key: DataReader) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            version = active_scheme(conn)
            history = list_versions(conn)
        return {
            **version.as_dict(),
            "warnings": check_coverage(version.scheme).messages(),
            "history": history,
        }

    @app.put(
        "/v1/scheme",
        tags=["scoring"],
        summary="Store a new scheme version and re-score everyone (role: admin)",
        description=(
            'The body is the scheme\'s YAML (any text content type) or JSON `{"yaml": "..."}`. It is '
            "validated (422 naming the field), stored as the next version and every customer is re-scored "
            "in the same transaction (cause `scheme`); the change is written to the audit log. "
            "With `dry_run=true` nothing is stored: the answer holds the segment counts the new scheme "
            "would give today next to the current ones. 409 while another run is in progress."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/yaml": {"schema": {"type": "string"}},
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"yaml": {"type": "string"}},
                            "required": ["yaml"],
                        }
                    },
                },
            }
        },
    )
    async def put_scheme(
        request: Request,
        svc: ServiceDep,
        key: Admin,
        dry_run: Annotated[bool, Query(description="only compare segment counts; store nothing")] = False,
    ) -> JSONResponse:
        text = await _scheme_text(request)
        try:
            scheme = parse_scheme(text)
        except SchemeError as err:
            return JSONResponse({"detail": scheme_error_details(err)}, status_code=422)
        warnings = check_coverage(scheme).messages()
        if dry_run:
            preview = await run_in_threadpool(preview_scheme, svc.engine, svc.settings, scheme)
            return JSONResponse({**preview, "warnings": warnings})
        try:
            result = await run_in_threadpool(
                lambda: run_now(
                    svc.engine,
                    svc.settings,
                    trigger="scheme",
                    actor=_actor(key),
                    wait_seconds=SCHEME_WAIT_SECONDS,
                    scheme_text=text,
                    scheme=scheme,
                )
            )
        except RunInProgress as err:
            return JSONResponse({"detail": str(err)}, status_code=409, headers=_CONFLICT)
        return JSONResponse(
            {
                "version": result.scheme_version,
                "name": scheme.name,
                "run": result.as_dict(),
                "warnings": warnings,
            }
        )

    @app.get("/v1/segments", tags=["segments"], summary="Customers, shares and revenue per segment")
    def get_segments(svc: ServiceDep, _key: DataReader) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            return segment_summary(conn, svc.settings)

    @app.get(
        "/v1/segments/{name}/customers",
        tags=["segments"],
        summary="A segment's customers by customer id, with a cursor (role: admin, analyst or agent)",
    )
    def get_segment_customers(
        svc: ServiceDep,
        _key: CustomerReader,
        name: Annotated[str, Path(min_length=1, max_length=64)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> dict[str, Any]:
        after = _decode_cursor(cursor) if cursor else None
        with svc.engine.connect() as conn:
            version = active_scheme(conn)
            rows, last = segment_customers(conn, name, after=after, limit=limit)
        known = {s.name for s in version.scheme.segments} | {NO_SEGMENT}
        if not rows and after is None and name not in known:
            raise HTTPException(
                404, f"no segment {name!r} in scheme {version.name!r} (segments: {', '.join(sorted(known))})"
            )
        return {
            "segment": name,
            "items": [score_out(r, svc.settings) for r in rows],
            "next_cursor": _encode_cursor(last) if last is not None else None,
        }

    @app.get(
        "/v1/customers/{customer_id}/scores",
        tags=["customers"],
        summary="A customer's scores, segment and segment history (role: admin, analyst or agent)",
    )
    def get_customer_scores(
        svc: ServiceDep,
        _key: CustomerReader,
        customer_id: Annotated[str, Path(min_length=1, max_length=256)],
        on: Annotated[date | None, Query(description="also answer the segment on this day")] = None,
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            row = (
                conn.execute(sa.select(customer_scores).where(customer_scores.c.customer_id == customer_id))
                .mappings()
                .first()
            )
            history = segment_history(conn, customer_id)
            past = segment_on(conn, customer_id, _day(on)) if on is not None else None
        if row is None and not history:
            raise HTTPException(404, f"no scores for customer {customer_id!r}")
        out: dict[str, Any] = {
            "customer_id": customer_id,
            "scores": score_out(dict(row), svc.settings) if row is not None else None,
            "history": history,
        }
        if on is not None:
            out["on"] = {"date": on.isoformat(), "segment": past}
        return out

    @app.get(
        "/v1/transitions",
        tags=["segments"],
        summary="Segment on one day against segment on another, counted (role: admin or analyst)",
    )
    def get_transitions(
        svc: ServiceDep,
        _key: DataReader,
        from_: Annotated[date | None, Query(alias="from", description="default: 30 days before `to`")] = None,
        to: Annotated[date | None, Query(description="default: today (business time zone)")] = None,
    ) -> dict[str, Any]:
        end = _day(to) if to is not None else business_day(datetime.now(UTC), svc.settings)
        start = _day(from_) if from_ is not None else end - 30
        if start > end:
            raise HTTPException(
                422, [{"loc": ["query", "from"], "msg": "must not be after 'to'", "type": "value_error"}]
            )
        with svc.engine.connect() as conn:
            return transition_matrix(conn, start, end)

    @app.get(
        "/v1/runs", tags=["scoring"], summary="Recent scoring runs, newest first (role: admin or analyst)"
    )
    def get_runs(
        svc: ServiceDep,
        _key: DataReader,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        before: Annotated[int | None, Query(description="only runs with a smaller id (paging)")] = None,
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            runs = list_runs(conn, limit=limit, before=before)
        return {"runs": runs, "schedule": job_state(svc.engine)}

    @app.get("/v1/runs/{run_id}", tags=["scoring"], summary="One run, with its score bands")
    def get_one_run(svc: ServiceDep, _key: DataReader, run_id: int) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            found = get_run(conn, run_id)
        if found is None:
            raise HTTPException(404, f"no run {run_id}")
        return found

    @app.post(
        "/v1/runs",
        tags=["scoring"],
        status_code=201,
        summary="Score everyone now (role: admin or analyst); 409 while a run is in progress",
    )
    def post_run(svc: ServiceDep, key: DataReader) -> JSONResponse:
        try:
            result = run_now(svc.engine, svc.settings, trigger="api", actor=_actor(key))
        except RunInProgress as err:
            return JSONResponse({"detail": str(err)}, status_code=409, headers=_CONFLICT)
        return JSONResponse(result.as_dict(), status_code=201)

"""``/customers``: the filtered list (the service's search), its CSV and Parquet export, and
``/customers/{id}``: one customer, their events (newest first, paginated), manual tags, the
workflows they are or were in, their messages, consent per channel (with its history) and
open hand-off tasks."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlalchemy.engine import Connection
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from rfmflow.automation.consent import CHANNELS, ConsentError, consent_of, history, set_consent
from rfmflow.dashboard.customer_automation import journeys, messages, open_tasks
from rfmflow.dashboard.session import Session
from rfmflow.dashboard.web import (
    BadForm,
    check_csrf,
    first,
    money_text,
    query_url,
    read_form,
    redirect,
    render,
    require_permission,
    signed_in,
    svc,
)
from rfmflow.service.customer_detail import customer_detail
from rfmflow.service.customer_search import (
    MAX_LIMIT,
    SORTS,
    Bounds,
    CustomerFilter,
    SearchError,
    check_segments,
    iter_customers,
    money_scheme,
    search,
)
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import UTCDateTime, events, tags
from rfmflow.service.exports import MEDIA_TYPES, csv_chunks, customer_columns, parquet_tempfile
from rfmflow.service.scoring_schemes import active_scheme
from rfmflow.service.settings import Settings
from rfmflow.service.tags import TagOp, TagRejected, change_tags, customer_known

PAGE_SIZES = (25, 50, 100, 200)
EVENTS_PAGE = 25
INT_RANGES = ("r_score", "f_score", "m_score", "recency", "frequency")
SORT_LABELS = {
    "customer_id": "Customer",
    "recency": "Recency",
    "frequency": "Frequency",
    "monetary": "Monetary",
    "r_score": "R",
    "f_score": "F",
    "m_score": "M",
    "last_activity": "Last activity",
}
FILTER_PARAMS = (
    "segment",
    "churn_risk",
    "tag",
    "q",
    *(f"{n}_{end}" for n in (*INT_RANGES, "monetary") for end in ("min", "max")),
)


def parse_filter(request: Request) -> tuple[CustomerFilter, dict[str, str], dict[str, Any]]:
    """The list's filter from the query string: the filter, field errors, and the values as
    given (to fill the form again)."""
    params = request.query_params
    errors: dict[str, str] = {}
    given: dict[str, Any] = {
        "segment": params.getlist("segment"),
        "tag": params.getlist("tag"),
        "churn_risk": params.getlist("churn_risk"),
    }
    bounds: dict[str, Bounds] = {}
    for name in (*INT_RANGES, "monetary"):
        ends: list[Any] = []
        for end in ("min", "max"):
            key = f"{name}_{end}"
            text = (params.get(key) or "").strip()
            given[key] = text
            if not text:
                ends.append(None)
                continue
            try:
                number: Any = int(text) if name != "monetary" else Decimal(text)
                if name == "monetary" and not number.is_finite():
                    raise InvalidOperation
            except (ValueError, InvalidOperation):
                errors[key] = f"{text!r} is not {'a whole number' if name != 'monetary' else 'a number'}"
                ends.append(None)
                continue
            if number < 0:
                errors[key] = "must not be negative"
            ends.append(number)
        bounds[name] = Bounds(*ends)
    q = params.get("q")
    given["q"] = q or ""
    f = CustomerFilter(
        segments=tuple(s for s in given["segment"] if s),
        churn_risks=tuple(r for r in given["churn_risk"] if r),
        tags_all=tuple(t for t in given["tag"] if t),
        r_score=bounds["r_score"],
        f_score=bounds["f_score"],
        m_score=bounds["m_score"],
        recency=bounds["recency"],
        frequency=bounds["frequency"],
        monetary=bounds["monetary"],
        q=q.strip() if q and q.strip() else None,
    )
    for param, message in f.problems():
        errors.setdefault(param, message)
    return f, errors, given


def _sort(request: Request, errors: dict[str, str]) -> tuple[str, str, int]:
    sort = request.query_params.get("sort", "customer_id")
    order = request.query_params.get("order", "asc")
    if sort not in SORTS:
        errors["sort"] = f"unknown sort {sort!r}; one of: {', '.join(SORTS)}"
        sort = "customer_id"
    if order not in ("asc", "desc"):
        errors["order"] = "must be asc or desc"
        order = "asc"
    text = request.query_params.get("limit", "50")
    limit = int(text) if text.isdigit() else 0
    if not 1 <= limit <= MAX_LIMIT:
        errors["limit"] = f"must be a whole number from 1 to {MAX_LIMIT}"
        limit = 50
    return sort, order, limit


def tag_names(conn: Connection, kind: str | None = None) -> list[str]:
    query = sa.select(tags.c.name).order_by(tags.c.name)
    if kind is not None:
        query = query.where(tags.c.kind == kind)
    return [str(n) for n in conn.execute(query).scalars()]


def _event_cursor(day: int, occurred: datetime, event_id: str) -> str:
    raw = json.dumps([day, occurred.isoformat(), event_id], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _read_event_cursor(text: str) -> tuple[int, datetime, str] | None:
    try:
        data = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True))
        day, occurred, event_id = data
        moment = datetime.fromisoformat(occurred)
        if not isinstance(day, int) or not isinstance(event_id, str) or moment.tzinfo is None:
            return None
        return day, moment, event_id
    except (binascii.Error, UnicodeError, ValueError, TypeError):
        return None


def events_page(
    conn: Connection,
    settings: Settings,
    customer_id: str,
    *,
    after: tuple[int, datetime, str] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """The customer's events newest first (by business day, time, id), after a cursor."""
    e = events.c
    query = sa.select(
        e.event_id,
        e.event_type,
        e.day,
        e.occurred_at,
        e.amount_minor,
        e.currency,
        e.order_id,
        e.source,
        e.properties,
    ).where(e.customer_id == customer_id)
    if after is not None:
        day, occurred, event_id = after
        here = sa.tuple_(e.day, e.occurred_at, e.event_id)
        there = sa.tuple_(sa.literal(day), sa.literal(occurred, UTCDateTime()), sa.literal(event_id))
        query = query.where(here < there)
    rows = conn.execute(
        query.order_by(e.day.desc(), e.occurred_at.desc(), e.event_id.desc()).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = [
        {
            "event_id": r.event_id,
            "type": r.event_type,
            "occurred_at": r.occurred_at,
            "amount": None
            if r.amount_minor is None
            else Decimal(int(r.amount_minor)).scaleb(-settings.money_decimals),
            "currency": r.currency,
            "order_id": r.order_id,
            "source": r.source,
            "properties": json.dumps(r.properties, ensure_ascii=False, sort_keys=True)
            if r.properties
            else "",
        }
        for r in rows
    ]
    cursor = _event_cursor(rows[-1].day, rows[-1].occurred_at, rows[-1].event_id) if more and rows else None
    return out, cursor


def register(app: FastAPI) -> None:
    @app.get("/customers", include_in_schema=False)
    def customers_page(request: Request) -> Response:
        session = signed_in(request, "customers:read")
        state = svc(request)
        f, errors, given = parse_filter(request)
        sort, order, limit = _sort(request, errors)
        cursor = request.query_params.get("cursor") or None
        page = None
        with state.engine.connect() as conn:
            version = active_scheme(conn)
            all_tags = tag_names(conn)
            if not errors:
                try:
                    check_segments(conn, f.segments)
                    page = search(conn, state.settings, f, sort=sort, order=order, limit=limit, cursor=cursor)
                except SearchError as err:
                    for param, message in err.problems:
                        errors.setdefault(param, message)
        for item in page.items if page else []:
            m = item["monetary"]
            item["monetary_text"] = (
                money_text(m, state.settings.money_decimals)
                if isinstance(m, Decimal)
                else ("–" if m is None else f"{m:g}")
            )
        filters = {k: given[k] for k in FILTER_PARAMS if given.get(k)}
        base = {**filters, "sort": sort, "order": order, "limit": limit}
        can_export = session.allows("data:export")

        def sort_url(column: str) -> str:
            flip = "desc" if (column == sort and order == "asc") else "asc"
            return query_url("/customers", {**filters, "sort": column, "order": flip, "limit": limit})

        return render(
            request,
            "customers.html.j2",
            session=session,
            page="customers",
            title="Customers",
            status=422 if errors else 200,
            errors=errors,
            given=given,
            result=page,
            segments=[s.name for s in version.scheme.segments],
            tags=all_tags,
            sort=sort,
            order=order,
            limit=limit,
            page_sizes=PAGE_SIZES,
            sort_url=sort_url,
            sort_labels=SORT_LABELS,
            active=[(k, v) for k, v in filters.items()],
            first_url=query_url("/customers", base) if cursor else None,
            next_url=query_url("/customers", {**base, "cursor": page.next_cursor})
            if page and page.next_cursor
            else None,
            export_csv=query_url("/customers/export.csv", {**filters, "sort": sort, "order": order})
            if can_export
            else None,
            export_parquet=query_url("/customers/export.parquet", {**filters, "sort": sort, "order": order})
            if can_export
            else None,
            clear_url="/customers",
        )

    def _export_rows(state: Any, f: CustomerFilter, sort: str, order: str) -> Iterator[dict[str, Any]]:
        with state.engine.connect() as conn:
            yield from iter_customers(conn, state.settings, f, sort=sort, order=order)

    def _export_check(request: Request) -> tuple[Any, CustomerFilter, str, str, bool]:
        signed_in(request, "data:export")
        state = svc(request)
        f, errors, _given = parse_filter(request)
        sort, order, _limit = _sort(request, errors)
        with state.engine.connect() as conn:
            try:
                check_segments(conn, f.segments)
            except SearchError as err:
                errors.update(dict(err.problems))
            money = money_scheme(conn)
        if errors:
            raise BadForm(422, "; ".join(f"{k}: {v}" for k, v in errors.items()))
        return state, f, sort, order, money

    @app.get("/customers/export.csv", include_in_schema=False)
    def export_csv(request: Request) -> Response:
        state, f, sort, order, money = _export_check(request)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        return StreamingResponse(
            csv_chunks(customer_columns(money=money), _export_rows(state, f, sort, order)),
            media_type=MEDIA_TYPES["csv"],
            headers={
                "Content-Disposition": f'attachment; filename="customers-{stamp}.csv"',
                "Cache-Control": "no-store",
            },
        )

    @app.get("/customers/export.parquet", include_in_schema=False)
    def export_parquet(request: Request) -> Response:
        state, f, sort, order, money = _export_check(request)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = parquet_tempfile(
            customer_columns(money=money),
            _export_rows(state, f, sort, order),
            money_decimals=state.settings.money_decimals,
        )
        return FileResponse(
            path,
            media_type=MEDIA_TYPES["parquet"],
            filename=f"customers-{stamp}.parquet",
            headers={"Cache-Control": "no-store"},
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    def _customer_page(
        request: Request,
        session: Session,
        customer_id: str,
        *,
        tag_error: str | None = None,
        consent_error: str | None = None,
        status: int = 200,
    ) -> Response:
        state = svc(request)
        cursor_text = request.query_params.get("events") or None
        after = _read_event_cursor(cursor_text) if cursor_text else None
        errors = {}
        if cursor_text and after is None:
            errors["events"] = "not a cursor this page gave"
        with state.engine.connect() as conn:
            found = customer_detail(conn, state.settings, customer_id, events_limit=0)
            if found is None:
                return render(
                    request,
                    "error.html.j2",
                    session=session,
                    status=404,
                    title="No such customer",
                    message=f"no customer {customer_id!r}",
                )
            timeline, next_cursor = events_page(
                conn, state.settings, customer_id, after=after, limit=EVENTS_PAGE
            )
            manual = tag_names(conn, "manual")
            automation = {
                "journeys": journeys(conn, customer_id, decimals=state.settings.money_decimals),
                "messages": messages(conn, customer_id),
                "consent": consent_of(conn, customer_id),
                "consent_history": history(conn, customer_id),
                "tasks": open_tasks(conn, customer_id),
            }
        held = {t["tag"] for t in found["tags"]}
        return render(
            request,
            "customer.html.j2",
            session=session,
            page="customers",
            title=f"Customer {customer_id}",
            status=status if not errors else 422,
            errors=errors,
            c=found,
            customer_id=customer_id,
            timeline=timeline,
            next_events=query_url(f"/customers/{_path(customer_id)}", {"events": next_cursor})
            if next_cursor
            else None,
            first_events=f"/customers/{_path(customer_id)}" if cursor_text else None,
            can_tag=session.allows("customers:write"),
            addable=[t for t in manual if t not in held],
            tag_error=tag_error,
            path=_path(customer_id),
            can_consent=session.allows("customers:write"),
            consent_error=consent_error,
            **automation,
        )

    @app.get("/customers/{customer_id:path}", include_in_schema=False)
    def customer_page(request: Request, customer_id: str) -> Response:
        return _customer_page(request, signed_in(request, "customers:read"), customer_id)

    @app.post("/customers/{customer_id:path}/tags", include_in_schema=False)
    async def change_tag(request: Request, customer_id: str) -> Response:
        session = await run_in_threadpool(signed_in, request, "customers:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        require_permission(session, "customers:write", "add or remove tags")
        action = first(form, "action")
        tag = (first(form, "tag") or "").strip()
        problem = None
        if action not in ("add", "remove"):
            problem = "action: must be add or remove"
        elif not tag:
            problem = "tag: choose a tag"
        if problem is None:
            state = svc(request)
            actor = f"key:{session.key.id}"

            def work(conn: Connection) -> str | None:
                if not customer_known(conn, customer_id):
                    return f"no customer {customer_id!r}"
                change_tags(
                    conn,
                    [TagOp(customer_id, tag, "add" if action == "add" else "remove")],
                    actor=actor,
                    at=datetime.now(UTC),
                    audit_action=f"tag.{action}",
                    audit_target=f"customer:{customer_id}",
                    audit_details={"tags": [tag], "via": "dashboard"},
                )
                return None

            try:
                problem = await run_in_threadpool(run_write, state.engine, work)
            except TagRejected as err:
                problem = f"tag: {err.report.results[0].reason}"
        if problem is not None:
            return await run_in_threadpool(
                lambda: _customer_page(request, session, customer_id, tag_error=problem, status=422)
            )
        return redirect(f"/customers/{_path(customer_id)}#tags")

    @app.post("/customers/{customer_id:path}/consent", include_in_schema=False)
    async def change_consent(request: Request, customer_id: str) -> Response:
        session = await run_in_threadpool(signed_in, request, "customers:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        require_permission(session, "customers:write", "change consent")
        channel = first(form, "channel") or ""
        status = first(form, "status") or ""
        problem = None
        if channel not in CHANNELS:
            problem = f"channel: expected one of {', '.join(CHANNELS)}"
        elif status not in ("opted_in", "opted_out"):
            problem = "status: must be opted_in or opted_out"
        if problem is None:
            state = svc(request)
            actor = f"key:{session.key.id}"

            def work(conn: Connection) -> str | None:
                if not customer_known(conn, customer_id):
                    return f"no customer {customer_id!r}"
                set_consent(conn, customer_id, channel, status, "manual", actor=actor, at=datetime.now(UTC))
                return None

            try:
                problem = await run_in_threadpool(run_write, state.engine, work)
            except ConsentError as err:
                problem = str(err)
        if problem is not None:
            return await run_in_threadpool(
                lambda: _customer_page(request, session, customer_id, consent_error=problem, status=422)
            )
        return redirect(f"/customers/{_path(customer_id)}#consent")


def _path(customer_id: str) -> str:
    return quote(customer_id, safe="")

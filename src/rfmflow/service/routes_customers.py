"""Customers over HTTP: the list (search, filters, sorting, cursor pages), one customer, and a
customer's segment on a past day.

==============================================  ===================  ======================================
endpoint                                        roles                what
==============================================  ===================  ======================================
``GET /v1/customers``                           admin, analyst,      filtered, sorted list; keyset cursor;
                                                agent                total on the first page
``GET /v1/customers/{id}``                      admin, analyst,      aggregates, profile, scores, segment,
                                                agent                tags, segment history, latest events
``GET /v1/customers/{id}/segment?on=DATE``      admin, analyst,      the segment on that day
                                                agent
==============================================  ===================  ======================================

The list's filters (:func:`customer_filter`) are shared with ``GET /v1/exports/customers``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query
from starlette.concurrency import run_in_threadpool

from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.customer_detail import MAX_EVENTS, customer_detail, segment_on_day
from rfmflow.service.customer_search import (
    MAX_LIMIT,
    Bounds,
    CustomerFilter,
    SearchError,
    Sort,
    check_segments,
    customer_json,
    page_and_total,
)
from rfmflow.service.history import day_number
from rfmflow.service.scoring_live import business_day, day_date

CustomerReader = Annotated[ApiKey, Depends(require("customers:read"))]
CustomerId = Annotated[str, Path(min_length=1, max_length=256)]
Names = Annotated[list[str] | None, Query()]
Score = Annotated[int | None, Query(ge=0, le=100)]
Count = Annotated[int | None, Query(ge=0)]
Money = Annotated[Decimal | None, Query(description="in currency units when M is money")]


def unprocessable(err: SearchError) -> HTTPException:
    return HTTPException(422, err.details())


def customer_filter(
    segment: Annotated[list[str] | None, Query(description="segment name; repeat for any of several")] = None,
    lifecycle: Annotated[
        list[str] | None, Query(description="lifecycle stage; repeat for any of several")
    ] = None,
    churn_risk: Annotated[
        list[str] | None,
        Query(description="predicted churn risk (low, medium, high); repeat for any of several"),
    ] = None,
    tag: Annotated[list[str] | None, Query(description="has this tag; repeat: has all of them")] = None,
    tag_any: Annotated[list[str] | None, Query(description="has at least one of these tags")] = None,
    tag_none: Annotated[list[str] | None, Query(description="has none of these tags")] = None,
    r_score_min: Score = None,
    r_score_max: Score = None,
    f_score_min: Score = None,
    f_score_max: Score = None,
    m_score_min: Score = None,
    m_score_max: Score = None,
    recency_min: Annotated[int | None, Query(ge=0, description="recency in days, at least")] = None,
    recency_max: Annotated[int | None, Query(ge=0, description="recency in days, at most")] = None,
    frequency_min: Count = None,
    frequency_max: Count = None,
    monetary_min: Money = None,
    monetary_max: Money = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="prefix of the customer id, the email or the name"),
    ] = None,
) -> CustomerFilter:
    """The list's filters from the query string (422 naming the parameter when a range is upside down)."""
    found = CustomerFilter(
        segments=tuple(segment or ()),
        lifecycles=tuple(lifecycle or ()),
        churn_risks=tuple(churn_risk or ()),
        tags_all=tuple(tag or ()),
        tags_any=tuple(tag_any or ()),
        tags_none=tuple(tag_none or ()),
        r_score=Bounds(r_score_min, r_score_max),
        f_score=Bounds(f_score_min, f_score_max),
        m_score=Bounds(m_score_min, m_score_max),
        recency=Bounds(recency_min, recency_max),
        frequency=Bounds(frequency_min, frequency_max),
        monetary=Bounds(monetary_min, monetary_max),
        q=q,
    )
    problems = found.problems()
    if problems:
        raise unprocessable(SearchError(problems))
    return found


FilterDep = Annotated[CustomerFilter, Depends(customer_filter)]
SortParam = Annotated[Sort, Query(description="the value to sort by; ties by customer id")]
OrderParam = Annotated[Literal["asc", "desc"], Query()]


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""

    @app.get(
        "/v1/customers",
        tags=["customers"],
        summary="Search and filter customers, sorted, with a cursor (role: admin, analyst or agent)",
        description=(
            "Filters combine with AND; repeat `segment`, `lifecycle`, `tag_any`, `tag_none` for any of "
            "several values and `tag` for all of several. Ranges are inclusive. `q` matches a prefix of the "
            "customer id, the profile email or the profile name (case-insensitive for email and name). Pages "
            "are cut by keyset: pass `next_cursor` back as `cursor` with the same filters, sort and order. "
            "`total` counts every match: on the first page (`total=auto`, the default), on every page "
            "(`exact`) or never (`none`). 422 names the parameter at fault."
        ),
    )
    def list_customers(
        svc: ServiceDep,
        _key: CustomerReader,
        f: FilterDep,
        sort: SortParam = "customer_id",
        order: OrderParam = "asc",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        total: Annotated[Literal["auto", "exact", "none"], Query()] = "auto",
    ) -> dict[str, Any]:
        count = total == "exact" or (total == "auto" and not cursor)
        try:
            with svc.engine.connect() as conn:
                check_segments(conn, f.segments)
            page = page_and_total(
                svc.engine, svc.settings, f, sort=sort, order=order, limit=limit, cursor=cursor, count=count
            )
        except SearchError as err:
            raise unprocessable(err) from None
        return {
            "items": [customer_json(item) for item in page.items],
            "next_cursor": page.next_cursor,
            "total": page.total,
            "sort": sort,
            "order": order,
            "limit": limit,
            "currency": svc.settings.currency,
        }

    @app.get(
        "/v1/customers/{customer_id}",
        tags=["customers"],
        summary="One customer: aggregates, profile, scores, tags, history, events (admin, analyst, agent)",
    )
    async def get_customer(
        svc: ServiceDep,
        _key: CustomerReader,
        customer_id: CustomerId,
        events: Annotated[
            int, Query(ge=0, le=MAX_EVENTS, description="how many latest events to include")
        ] = 20,
    ) -> dict[str, Any]:
        def read() -> dict[str, Any] | None:
            with svc.engine.connect() as conn:
                return customer_detail(conn, svc.settings, customer_id, events_limit=events)

        found = await run_in_threadpool(read)
        if found is None:
            raise HTTPException(404, f"no customer {customer_id!r}")
        return found

    @app.get(
        "/v1/customers/{customer_id}/segment",
        tags=["customers"],
        summary="The segment a customer was in on a day (role: admin, analyst or agent)",
    )
    def get_customer_segment(
        svc: ServiceDep,
        _key: CustomerReader,
        customer_id: CustomerId,
        on: Annotated[date | None, Query(description="default: today (business time zone)")] = None,
    ) -> dict[str, Any]:
        day = day_number(on) if on is not None else business_day(datetime.now(UTC), svc.settings)
        with svc.engine.connect() as conn:
            known, segment = segment_on_day(conn, customer_id, day)
        if not known:
            raise HTTPException(404, f"no customer {customer_id!r}")
        return {"customer_id": customer_id, "date": day_date(day).isoformat(), "segment": segment}


__all__ = ["FilterDep", "customer_filter", "register", "unprocessable"]

"""Customer profiles over HTTP.

====================================================  ===================  ===========================
endpoint                                              roles                what
====================================================  ===================  ===========================
``GET /v1/customers/{id}/profile``                    admin, analyst,      the profile (404: none)
                                                      agent
``PATCH /v1/customers/{id}/profile``                  admin                merge traits into it
====================================================  ===================  ===========================

``PATCH`` takes ``{"traits": {...}}``: the traits it names are set (``null`` removes one), the
others kept; ``email``, ``phone``, ``name``, ``timezone``, ``language`` and
``telegram_chat_id`` are checked and answered 422 naming the trait when they fail (the API is
strict; Segment ``identify`` calls are lenient and answer warnings instead). Each change writes
an ``audit_log`` row (``profile.update``, the key, the trait names).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import audit_log
from rfmflow.service.profiles import MAX_TRAITS_BYTES, read_profile, read_traits, upsert_profile

CustomerId = Annotated[str, Path(min_length=1, max_length=256)]


def _invalid(loc: list[str | int], msg: str, kind: str) -> HTTPException:
    return HTTPException(422, [{"loc": loc, "msg": msg, "type": kind}])


async def _traits(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_TRAITS_BYTES:
        raise HTTPException(413, f"the body is over {MAX_TRAITS_BYTES // 1024} KB")
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _invalid(["body"], f"invalid JSON: {err}", "json_invalid") from None
    if not isinstance(payload, dict) or set(payload) != {"traits"}:
        raise _invalid(["body"], 'expected {"traits": {...}}', "model_attributes_type")
    traits = payload["traits"]
    if not isinstance(traits, dict) or not traits:
        raise _invalid(["body", "traits"], "expected a non-empty object of traits", "dict_type")
    for name in traits:
        if not name.strip() or len(name) > 100:
            raise _invalid(["body", "traits", name], "a trait name is 1 to 100 characters", "string_length")
    return traits


def register(app: FastAPI) -> None:
    @app.get(
        "/v1/customers/{customer_id}/profile",
        tags=["customers"],
        summary="A customer's profile: traits, email, time zone, Telegram chat (admin, analyst, agent)",
    )
    def get_profile(
        svc: ServiceDep,
        _key: Annotated[ApiKey, Depends(require("customers:read"))],
        customer_id: CustomerId,
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            profile = read_profile(conn, customer_id)
        if profile is None:
            raise HTTPException(404, f"no profile for customer {customer_id!r}")
        return profile

    @app.patch(
        "/v1/customers/{customer_id}/profile",
        tags=["customers"],
        summary="Merge traits into a customer's profile (role: admin)",
    )
    async def patch_profile(
        request: Request,
        svc: ServiceDep,
        key: Annotated[ApiKey, Depends(require("admin"))],
        customer_id: CustomerId,
    ) -> dict[str, Any]:
        traits = await _traits(request)
        update = read_traits(traits)
        if update.warnings:
            raise HTTPException(
                422,
                [
                    {"loc": ["body", "traits", w.split(":", 1)[0]], "msg": w, "type": "value_error"}
                    for w in update.warnings
                ],
            )
        now = datetime.now(UTC)

        def store() -> dict[str, Any]:
            def work(conn: Connection) -> dict[str, Any]:
                profile = upsert_profile(conn, customer_id, update, at=now, source="api")
                conn.execute(
                    audit_log.insert().values(
                        at=now,
                        actor=f"key:{key.id}",
                        action="profile.update",
                        target=f"customer:{customer_id}",
                        details={"traits": sorted(traits)},
                    )
                )
                return profile

            return run_write(svc.engine, work)

        return await run_in_threadpool(store)


__all__ = ["register"]

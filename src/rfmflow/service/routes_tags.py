"""Tags, tag groups, customers' tags, the tag-change feed, and tag import/export over HTTP.

=============================================  ==================  ======================================
endpoint                                       roles               what
=============================================  ==================  ======================================
``GET /v1/tags``                               admin, analyst,     every tag: kind, group, description,
                                               agent               customers holding it
``POST /v1/tags``                              admin               create a manual tag
``DELETE /v1/tags/{name}``                     admin               delete a manual tag (removed from
                                                                   every customer, each recorded)
``GET /v1/tag-groups``                         admin, analyst,     groups and their tags
                                               agent
``POST /v1/tag-groups``                        admin               create a group (``exclusive``: at most
                                                                   one manual tag of it per customer)
``PATCH/DELETE /v1/tag-groups/{name}``         admin               change or delete a group
``GET /v1/customers/{id}/tags``                admin, analyst,     current tags and the change history
                                               agent
``POST /v1/customers/{id}/tags``               admin, agent        add manual tags (all or nothing)
``DELETE /v1/customers/{id}/tags/{tag}``       admin, agent        remove a manual tag
``POST /v1/tags/{name}/customers``             admin               add (or remove) a tag for many
                                                                   customers, per-item results
``GET /v1/tag-changes``                        admin, analyst      the feed of changes, cursor by id
``POST /v1/tags/import``                       admin               CSV customer_id,tag[,action]
``GET /v1/tags/export``                        admin, analyst      CSV customer_id,tag,kind,added_at,
                                                                   added_by (streamed)
=============================================  ==================  ======================================

Agents (a support desk) tag the customer in front of them, as HubSpot lets its users tag
contacts; defining tags and groups, bulk changes and imports are for admins. Every change
made here writes one ``audit_log`` row (actor ``key:<id>``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.db.engine import run_write
from rfmflow.service.tags import (
    TagError,
    TagOp,
    TagRejected,
    change_tags,
    changes_since,
    create_group,
    create_tag,
    customer_known,
    delete_group,
    delete_tag,
    get_tag,
    list_groups,
    list_tags,
    tag_history,
    tags_of,
    update_group,
)
from rfmflow.service.tags_csv import MAX_IMPORT_BYTES, ImportRejected, decode, export_csv, import_tags

T = TypeVar("T")
MAX_TAGS_PER_REQUEST = 100
MAX_BULK_CUSTOMERS = 10_000

CustomerReader = Annotated[ApiKey, Depends(require("customers:read"))]
DataReader = Annotated[ApiKey, Depends(require("data:read"))]
Exporter = Annotated[ApiKey, Depends(require("data:export"))]
Admin = Annotated[ApiKey, Depends(require("admin"))]
_admin = require("admin")


TagWriter = Annotated[ApiKey, Depends(require("customers:write", "add or remove customers' tags"))]


# --- bodies ------------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TagIn(_Body):
    name: str = Field(description="1-64 characters: letters, digits, spaces and - _ : .")
    group: str | None = Field(default=None, description="an existing tag group")
    description: str = ""


class GroupIn(_Body):
    name: str
    description: str = ""
    exclusive: bool = Field(default=False, description="a customer holds at most one manual tag of it")


class GroupPatch(_Body):
    description: str | None = None
    exclusive: bool | None = None


class CustomerTagsIn(_Body):
    tags: list[str] = Field(min_length=1, max_length=MAX_TAGS_PER_REQUEST)


class BulkIn(_Body):
    customer_ids: list[str] = Field(min_length=1, max_length=MAX_BULK_CUSTOMERS)
    action: Literal["add", "remove"] = "add"


# --- helpers -----------------------------------------------------------------------------------
def _actor(key: ApiKey) -> str:
    return f"key:{key.id}"


def _fail(err: TagError, where: str = "body") -> NoReturn:
    if err.status == 422:
        raise HTTPException(422, [{"loc": [where, *err.loc], "msg": err.message, "type": "value_error"}])
    raise HTTPException(err.status, err.message)


def _write(svc: Any, work: Callable[[Connection], T], where: str = "body") -> T:
    try:
        return run_write(svc.engine, work)
    except TagError as err:
        _fail(err, where)


def _now() -> datetime:
    return datetime.now(UTC)


def _need_customer(conn: Connection, customer_id: str) -> None:
    if not customer_known(conn, customer_id):
        raise HTTPException(404, f"no customer {customer_id!r}")


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""

    # --- tags ----------------------------------------------------------------------------------
    @app.get("/v1/tags", tags=["tags"], summary="Every tag with its kind, group and customer count")
    def get_tags(
        svc: ServiceDep,
        _key: CustomerReader,
        kind: Annotated[Literal["rule", "manual"] | None, Query()] = None,
        group: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            return {"tags": list_tags(conn, kind=kind, group=group)}

    @app.post("/v1/tags", tags=["tags"], status_code=201, summary="Create a manual tag (role: admin)")
    def post_tag(svc: ServiceDep, key: Admin, body: TagIn) -> dict[str, Any]:
        return _write(
            svc,
            lambda conn: create_tag(
                conn, body.name, group=body.group, description=body.description, actor=_actor(key), at=_now()
            ),
        )

    @app.delete(
        "/v1/tags/{name}",
        tags=["tags"],
        summary="Delete a manual tag; it is removed from every customer (role: admin)",
    )
    def remove_tag(
        svc: ServiceDep, key: Admin, name: Annotated[str, Path(min_length=1, max_length=64)]
    ) -> dict[str, Any]:
        removed = _write(svc, lambda conn: delete_tag(conn, name, actor=_actor(key), at=_now()))
        return {"deleted": name, "removed_from": removed}

    # --- groups --------------------------------------------------------------------------------
    @app.get("/v1/tag-groups", tags=["tags"], summary="Tag groups and their tags")
    def get_groups(svc: ServiceDep, _key: CustomerReader) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            return {"groups": list_groups(conn)}

    @app.post("/v1/tag-groups", tags=["tags"], status_code=201, summary="Create a tag group (role: admin)")
    def post_group(svc: ServiceDep, key: Admin, body: GroupIn) -> dict[str, Any]:
        return _write(
            svc,
            lambda conn: create_group(
                conn,
                body.name,
                description=body.description,
                exclusive=body.exclusive,
                actor=_actor(key),
                at=_now(),
            ),
        )

    @app.patch(
        "/v1/tag-groups/{name}",
        tags=["tags"],
        summary="Change a group's description or exclusivity (role: admin)",
    )
    def patch_group(
        svc: ServiceDep, key: Admin, name: Annotated[str, Path(min_length=1, max_length=64)], body: GroupPatch
    ) -> dict[str, Any]:
        return _write(
            svc,
            lambda conn: update_group(
                conn,
                name,
                description=body.description,
                exclusive=body.exclusive,
                actor=_actor(key),
                at=_now(),
            ),
        )

    @app.delete("/v1/tag-groups/{name}", tags=["tags"], summary="Delete an empty tag group (role: admin)")
    def remove_group(
        svc: ServiceDep, key: Admin, name: Annotated[str, Path(min_length=1, max_length=64)]
    ) -> dict[str, Any]:
        _write(svc, lambda conn: delete_group(conn, name, actor=_actor(key), at=_now()))
        return {"deleted": name}

    # --- one customer --------------------------------------------------------------------------
    @app.get(
        "/v1/customers/{customer_id}/tags",
        tags=["customers"],
        summary="A customer's tags and tag history (role: admin, analyst or agent)",
    )
    def get_customer_tags(
        svc: ServiceDep,
        _key: CustomerReader,
        customer_id: Annotated[str, Path(min_length=1, max_length=256)],
        history: Annotated[int, Query(ge=0, le=1000, description="how many changes, newest first")] = 100,
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            _need_customer(conn, customer_id)
            return {
                "customer_id": customer_id,
                "tags": tags_of(conn, customer_id),
                "history": tag_history(conn, customer_id, limit=history) if history else [],
            }

    @app.post(
        "/v1/customers/{customer_id}/tags",
        tags=["customers"],
        summary="Add manual tags to a customer, all or nothing (role: admin or agent)",
        description=(
            'Body `{"tags": ["VIP", ...]}` (up to 100). Each tag must exist and be manual; a tag of an '
            "exclusive group replaces the customer's other tag of that group. Answers each tag's status "
            "(`added`, `unchanged`, `duplicate`, with `replaced`) and the customer's tags. 404: unknown "
            "customer; 409: a rule tag; 422: an unknown or malformed tag (nothing is written)."
        ),
    )
    def post_customer_tags(
        svc: ServiceDep,
        key: TagWriter,
        customer_id: Annotated[str, Path(min_length=1, max_length=256)],
        body: CustomerTagsIn,
    ) -> dict[str, Any]:
        ops = [TagOp(customer_id, tag, "add") for tag in body.tags]

        def work(conn: Connection) -> dict[str, Any]:
            _need_customer(conn, customer_id)
            report = change_tags(
                conn,
                ops,
                actor=_actor(key),
                at=_now(),
                audit_action="tag.add",
                audit_target=f"customer:{customer_id}",
                audit_details={"tags": body.tags},
            )
            return {
                "customer_id": customer_id,
                "results": [
                    {"tag": r.tag, "status": r.status, "replaced": r.replaced} for r in report.results
                ],
                "tags": tags_of(conn, customer_id),
            }

        try:
            return run_write(svc.engine, work)
        except TagRejected as err:
            bad = [r for r in err.report.results if r.status == "rejected"]
            conflicts = [r for r in bad if r.code == 409]
            if conflicts:
                raise HTTPException(409, "; ".join(r.reason or "" for r in conflicts)) from None
            raise HTTPException(
                422,
                [{"loc": ["body", "tags", r.index], "msg": r.reason, "type": "value_error"} for r in bad],
            ) from None

    @app.delete(
        "/v1/customers/{customer_id}/tags/{tag}",
        tags=["customers"],
        summary="Remove a manual tag from a customer (role: admin or agent)",
        description=(
            "Answers `removed`, or `unchanged` when the customer did not hold it. 404: unknown customer "
            "or tag; 409: a rule tag (the scheme's rule decides it)."
        ),
    )
    def delete_customer_tag(
        svc: ServiceDep,
        key: TagWriter,
        customer_id: Annotated[str, Path(min_length=1, max_length=256)],
        tag: Annotated[str, Path(min_length=1, max_length=64)],
    ) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            _need_customer(conn, customer_id)
            report = change_tags(
                conn,
                [TagOp(customer_id, tag, "remove")],
                actor=_actor(key),
                at=_now(),
                audit_action="tag.remove",
                audit_target=f"customer:{customer_id}",
                audit_details={"tags": [tag]},
            )
            return {
                "customer_id": customer_id,
                "tag": tag,
                "status": report.results[0].status,
                "tags": tags_of(conn, customer_id),
            }

        try:
            return run_write(svc.engine, work)
        except TagRejected as err:
            first = err.report.results[0]
            raise HTTPException(first.code or 422, first.reason) from None

    # --- many customers ------------------------------------------------------------------------
    @app.post(
        "/v1/tags/{name}/customers",
        tags=["tags"],
        summary="Add or remove a manual tag for up to 10,000 customers (role: admin)",
        description=(
            'Body `{"customer_ids": [...], "action": "add"}` (or `"remove"`). Answers one result per '
            "customer, in order (`added`, `removed`, `unchanged`, `duplicate`, `rejected` with the reason); "
            "the others are applied even when some are rejected, unless `atomic=true` (then 422 and "
            "nothing is written). 404: unknown tag; 409: a rule tag."
        ),
    )
    def post_bulk(
        svc: ServiceDep,
        key: Admin,
        name: Annotated[str, Path(min_length=1, max_length=64)],
        body: BulkIn,
        atomic: Annotated[bool, Query(description="all or nothing")] = False,
    ) -> JSONResponse:
        ops = [TagOp(cid, name, body.action) for cid in body.customer_ids]

        def work(conn: Connection) -> dict[str, Any]:
            found = get_tag(conn, name)
            if found["kind"] == "rule":
                raise HTTPException(409, f"{name!r} is a rule tag: the scheme's rule adds and removes it")
            report = change_tags(
                conn,
                ops,
                actor=_actor(key),
                at=_now(),
                atomic=atomic,
                audit_action=f"tag.{body.action}",
                audit_target=f"tag:{name}",
                audit_details={"customers": len(ops), "bulk": True},
            )
            return {**report.counts(), "items": [r.as_dict() for r in report.results]}

        try:
            return JSONResponse(run_write(svc.engine, work))
        except TagRejected as err:
            items = [r.as_dict() for r in err.report.results]
            detail = [
                {"loc": ["body", "customer_ids", r.index], "msg": r.reason, "type": "value_error"}
                for r in err.report.results
                if r.status == "rejected"
            ]
            return JSONResponse({"detail": detail, **err.report.counts(), "items": items}, status_code=422)
        except TagError as err:
            _fail(err)

    # --- the feed --------------------------------------------------------------------------------
    @app.get(
        "/v1/tag-changes",
        tags=["tags"],
        summary="Tag changes after a cursor, oldest first (role: admin or analyst)",
        description=(
            "Every tag added or removed, by a rule (`actor` `run:<id>` or `event`) or a person "
            "(`key:<id>`, `cli:<user>`). Send `since_id` = the `next_since_id` of the previous answer "
            "to follow the feed; a consumer that does so sees every change exactly once, in id order."
        ),
    )
    def get_changes(
        svc: ServiceDep,
        _key: DataReader,
        since_id: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        tag: Annotated[str | None, Query(max_length=64)] = None,
        customer_id: Annotated[str | None, Query(max_length=256)] = None,
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            items, cursor = changes_since(conn, since_id, limit=limit, tag=tag, customer_id=customer_id)
        return {"items": items, "next_since_id": cursor}

    # --- import / export -------------------------------------------------------------------------
    @app.post(
        "/v1/tags/import",
        tags=["tags"],
        summary="Import tag changes from CSV customer_id,tag[,action] (role: admin)",
        description=(
            "The body is the CSV file (up to 20 MB) with a header line. `action` is `add` (default) or "
            "`remove`; lines whose `kind` column says `rule` are skipped, so an export imports as it is. "
            "All or nothing by default: any rejected line (unknown customer or tag, a rule tag, a "
            "malformed line) answers 422 with every rejected line numbered, and nothing is written; "
            "`partial=true` applies the other lines. Unknown tags are rejected unless `create=true`."
        ),
        openapi_extra={
            "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
        },
    )
    async def post_import(
        request: Request,
        svc: ServiceDep,
        key: Admin,
        partial: Annotated[bool, Query(description="apply the good lines, report the others")] = False,
        create: Annotated[bool, Query(description="create unknown manual tags")] = False,
    ) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_IMPORT_BYTES:
            raise HTTPException(413, f"the file is over {MAX_IMPORT_BYTES // 2**20} MB")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_IMPORT_BYTES:
                raise HTTPException(413, f"the file is over {MAX_IMPORT_BYTES // 2**20} MB")
            chunks.append(chunk)
        data = b"".join(chunks)

        def run() -> JSONResponse:
            try:
                text = decode(data)
                report = run_write(
                    svc.engine,
                    lambda conn: import_tags(
                        conn, text, actor=_actor(key), at=_now(), partial=partial, create=create
                    ),
                )
            except ImportRejected as err:
                body = err.report.as_dict(max_rejects=100)
                detail = [
                    {"loc": ["body", "line", r.line], "msg": r.reason, "type": "value_error"}
                    for r in err.report.rejects[:100]
                ]
                return JSONResponse({"detail": detail, **body}, status_code=422)
            except TagError as err:
                return JSONResponse(
                    {"detail": [{"loc": ["body", *err.loc], "msg": err.message, "type": "value_error"}]},
                    status_code=422,
                )
            return JSONResponse(report.as_dict(max_rejects=100))

        return await run_in_threadpool(run)

    @app.get(
        "/v1/tags/export",
        tags=["tags"],
        summary="Customers' tags as CSV customer_id,tag,kind,added_at,added_by (role: admin or analyst)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}}},
    )
    def get_export(
        svc: ServiceDep,
        _key: Exporter,
        tag: Annotated[list[str] | None, Query(description="only these tags (repeat the parameter)")] = None,
        kind: Annotated[Literal["rule", "manual"] | None, Query()] = None,
    ) -> StreamingResponse:
        names = list(dict.fromkeys(tag or []))
        with svc.engine.connect() as conn:
            for name in names:
                try:
                    get_tag(conn, name)
                except TagError as err:
                    _fail(err, "query")

        def stream() -> Iterator[str]:
            with svc.engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():  # one snapshot for the whole file
                    yield from export_csv(conn, names=names, kind=kind)

        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(names))[:80] if names else ""
        filename = f"tags-{stem}.csv" if stem else "tags.csv"
        return StreamingResponse(
            stream(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

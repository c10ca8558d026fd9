"""Segment-compatible endpoints and the Stripe, Shopify and WooCommerce webhooks.

Every way in here ends in :func:`rfmflow.service.ingest.ingest` (one transaction, duplicates
decided by the database), with ``source`` set to ``segment``, ``stripe``, ``shopify`` or
``woocommerce``; the pure adapters in :mod:`rfmflow.service.adapters` do the translation.

**Segment** (and RudderStack): ``POST /v1/track``, ``/v1/identify``, ``/v1/page``,
``/v1/screen``, ``/v1/group``, ``/v1/alias`` and ``/v1/batch`` (plus analytics.js's short
forms ``/v1/t``, ``/v1/i``, ``/v1/p``, ``/v1/s``, ``/v1/g``, ``/v1/a``, ``/v1/b``). The write
key is the basic-auth user (``Authorization: Basic base64("<key>:")``), ``writeKey`` in the
body, or ``Authorization: Bearer``; an ingest-role API key is a write key, and so is any key in
``RFMFLOW_SEGMENT_WRITE_KEYS``. Bodies may be gzip-compressed (``Content-Encoding: gzip``).
Answers: 200 ``{"success": true, ...}`` for accepted, duplicate and ignored messages (a batch
answers per message); 400 malformed JSON or gzip; 401 missing or unknown write key; 403 a key
of another role; 413 over 32 KB per message or 500 KB per request; 422 a message that cannot
be read; 503 database unavailable. Errors read ``{"success": false, "code", "message"}``, the
shape Segment's SDKs report through ``on_error``. ``identify`` merges its traits into the
customer's profile (:mod:`rfmflow.service.profiles`; answered ``"status": "profile"`` with any
warnings about traits that could not be used) and stores no event.

**Webhooks**: ``POST /v1/webhooks/stripe``, ``/v1/webhooks/shopify`` (topic from
``X-Shopify-Topic``), ``/v1/webhooks/woocommerce`` (topic from ``X-WC-Webhook-Topic``; the ping
sent when a webhook is saved is answered 200). The signature is checked over the raw body
bytes with the configured secret before anything is parsed. Answers: 200 ``{"status":
"accepted" | "duplicate" | "ignored", ...}`` (so the vendor does not retry); 400 missing,
malformed or mismatched signature, stale timestamp, malformed JSON; 404 the webhook's secret
is not configured; 413 over 1 MB; 422 a payload that cannot be read, or an event rfmflow
rejects (nothing of the delivery is written: each delivery is all or nothing); 503 database
unavailable (the vendor's retry is safe).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from rfmflow.service.adapters import (
    AdapterError,
    AdapterResult,
    CredentialsError,
    SignatureError,
    from_segment,
    from_segment_batch,
    from_shopify,
    from_stripe,
    from_woocommerce,
    is_woocommerce_ping,
    request_write_key,
    verify_shopify_hmac,
    verify_stripe_signature,
    verify_woocommerce_signature,
)
from rfmflow.service.app import ServiceState, service
from rfmflow.service.auth import KEY_PATTERN, ApiKey, authenticate
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import events as events_table
from rfmflow.service.events import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, EventIn
from rfmflow.service.ingest import FieldError, ItemResult, ingest
from rfmflow.service.profiles import read_traits, upsert_profile

log = logging.getLogger("rfmflow.service.sources")

#: Largest webhook body accepted (a big Shopify order with many lines stays well below it).
MAX_WEBHOOK_BYTES = 1024 * 1024
#: The role whose keys may be used as Segment write keys. Write keys end up in apps and
#: browsers, so admin keys are refused even though they may write events.
WRITE_KEY_ROLE = "ingest"

#: Segment calls and the paths that take them (``None``: a batch of any calls).
SEGMENT_PATHS: dict[str | None, tuple[str, str]] = {
    "track": ("/v1/track", "/v1/t"),
    "identify": ("/v1/identify", "/v1/i"),
    "page": ("/v1/page", "/v1/p"),
    "screen": ("/v1/screen", "/v1/s"),
    "group": ("/v1/group", "/v1/g"),
    "alias": ("/v1/alias", "/v1/a"),
    None: ("/v1/batch", "/v1/b"),
}


# --- metrics --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceMetrics:
    """Counters of this module, registered in the app's own registry next to the ingest ones.

    ``rfmflow_events_ingested_total``, ``..._duplicate_total`` and ``..._rejected_total`` (by
    ``source``) are the app's :class:`~rfmflow.service.metrics.Metrics`; these add what only
    sources have.
    """

    ignored: Counter
    identify: Counter
    traits: Counter
    signature_failures: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> SourceMetrics:
        return cls(
            ignored=Counter(
                "rfmflow_events_ignored",
                "Messages and webhooks that carry no event rfmflow counts (unmapped track events, "
                "identify, unused topics, unpaid orders, pings), answered 200.",
                ["source"],
                registry=registry,
            ),
            identify=Counter(
                "rfmflow_segment_identify",
                "Segment identify calls received (their traits merged into profiles).",
                registry=registry,
            ),
            traits=Counter(
                "rfmflow_segment_identify_traits",
                "Traits received in Segment identify calls.",
                registry=registry,
            ),
            signature_failures=Counter(
                "rfmflow_webhook_signature_failures",
                "Webhook deliveries refused for their signature, by kind (missing_signature, "
                "malformed_signature, signature_mismatch, timestamp_out_of_tolerance).",
                ["source", "code"],
                registry=registry,
            ),
        )


def _source_metrics(request: Request) -> SourceMetrics:
    metrics: SourceMetrics = request.app.state.source_metrics
    return metrics


# --- request bodies -------------------------------------------------------------------------
class Refused(Exception):
    """A request refused before its content is looked at: HTTP status, a short code, a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


async def read_raw_body(request: Request, limit: int) -> bytes:
    """The request body as sent, refused (413) beyond ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, "payload_too_large", f"the request body is over the {_kb(limit)} limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "payload_too_large", f"the request body is over the {_kb(limit)} limit")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_body(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """``raw`` uncompressed per ``Content-Encoding`` (``gzip`` or none), at most ``limit`` bytes.

    Decompression stops as soon as the output passes the limit, so a small "gzip bomb" costs
    no memory.
    """
    kind = (encoding or "identity").strip().lower()
    if kind in ("", "identity"):
        data = raw
    elif kind in ("gzip", "x-gzip"):
        data = _gunzip(raw, limit)
    else:
        raise Refused(
            415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip"
        )
    if len(data) > limit:
        raise Refused(413, "payload_too_large", f"the request body is over the {_kb(limit)} limit")
    return data


def _gunzip(data: bytes, limit: int) -> bytes:
    out = bytearray()
    try:
        while data:  # a gzip stream may hold several members
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise Refused(
                    413, "payload_too_large", f"the uncompressed request body is over the {_kb(limit)} limit"
                )
            if not inflater.eof:
                raise Refused(400, "invalid_gzip", "the gzip body is truncated")
            data = inflater.unused_data
    except zlib.error as err:
        raise Refused(400, "invalid_gzip", f"the body is not valid gzip ({err})") from None
    return bytes(out)


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Refused(400, "invalid_json", f"the body is not valid JSON: {err}") from None


def _kb(size: int) -> str:
    return f"{size // 1024} KB" if size < 1024 * 1024 else f"{size // (1024 * 1024)} MB"


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


# --- errors as JSON ---------------------------------------------------------------------------
_PATH_TOKEN = re.compile(r"\[(\d+)\]|[^.\[\]]+")


def path_loc(path: str) -> list[str | int]:
    """An adapter's field path as a ``loc`` list: ``refunds.data[0].amount`` gives
    ``["refunds", "data", 0, "amount"]``; a header name gives ``["header", name]``."""
    if path.lower().startswith("x-"):
        return ["header", path]
    return [int(m.group(1)) if m.group(1) is not None else m.group(0) for m in _PATH_TOKEN.finditer(path)]


def metric_reason(path: str) -> str:
    """A bounded metrics label for an adapter error: the field path without indices."""
    loc = [p for p in path_loc(path) if isinstance(p, str)]
    if loc[:1] == ["batch"]:
        loc = loc[1:]
    return ".".join(loc) or "body"


def _adapter_error(err: AdapterError, *, drop: int = 0) -> dict[str, Any]:
    """``err`` as a field error; ``drop`` leading ``loc`` parts (``batch``, index) are removed."""
    return {"loc": path_loc(err.field)[drop:], "msg": err.reason, "type": "invalid_payload"}


def _segment_error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="rfmflow"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return JSONResponse({"success": False, "code": code, "message": message, **extra}, status, headers)


def _unavailable(err: sa.exc.SQLAlchemyError) -> JSONResponse:
    log.error("ingest failed: database error", extra={"error": str(err).strip().splitlines()[0]})
    return JSONResponse(
        {"detail": "the database is unavailable; nothing was written, retry later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


# --- write keys -----------------------------------------------------------------------------
def _presented_write_key(authorization: str | None, body: Any) -> str:
    """The write key of a request: basic-auth user, ``Bearer`` token or the body's ``writeKey``."""
    if authorization and authorization.strip().lower().startswith("bearer "):
        key = authorization.strip()[len("bearer ") :].strip()
        in_body = body.get("writeKey") if isinstance(body, dict) else None
        if not key:
            raise CredentialsError("the Authorization header carries an empty bearer token")
        if isinstance(in_body, str) and in_body.strip() and in_body.strip() != key:
            raise CredentialsError(
                "the write key in the Authorization header and writeKey in the body differ"
            )
        return key
    return request_write_key(authorization, body)


def check_write_key(engine: Engine, configured: Sequence[str], key: str) -> ApiKey | None:
    """The ingest key ``key`` is (or ``None`` for a configured write key); raises
    :class:`Refused` (401 unknown, 403 a key of another role)."""
    if KEY_PATTERN.fullmatch(key):
        with engine.connect() as conn:
            found = authenticate(conn, key)
        if found is None:
            raise Refused(401, "invalid_write_key", "unknown or revoked write key")
        if found.role != WRITE_KEY_ROLE:
            raise Refused(
                403,
                "forbidden",
                f"a key with role {found.role!r} may not be used as a write key (write keys end up in "
                f"apps and browsers): create one with `rfmflow keys create --role {WRITE_KEY_ROLE}`",
            )
        return found
    given = key.encode()
    matches = [
        hmac.compare_digest(given, known.encode()) for known in configured
    ]  # each one, in constant time
    if any(matches):
        return None
    raise Refused(401, "invalid_write_key", "unknown write key")


# --- Segment --------------------------------------------------------------------------------
@dataclass
class _Outcome:
    """One Segment message's answer."""

    index: int
    event_id: str | None
    status: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    warnings: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "event_id": self.event_id, "status": self.status}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.warnings is not None:
            out["warnings"] = self.warnings
        out["errors"] = self.errors
        return out


def store_traits(
    engine: Engine,
    customer_id: str,
    traits: Mapping[str, Any],
    *,
    at: datetime,
    source: str,
    context: Mapping[str, Any] | None = None,
) -> list[str]:
    """Merge ``traits`` (dated ``at``) into the customer's profile; the warnings."""
    update = read_traits(traits, context)
    run_write(engine, lambda conn: upsert_profile(conn, customer_id, update, at=at, source=source))
    return update.warnings


def store_identify(engine: Engine, identify: Mapping[str, Any], *, source: str) -> list[str]:
    """Merge an ``identify`` call's traits into the customer's profile; the warnings."""
    return store_traits(
        engine,
        identify["customer_id"],
        identify.get("traits") or {},
        at=identify["occurred_at"],
        source=source,
        context=identify.get("context"),
    )


async def segment_call(request: Request, call: str | None) -> JSONResponse:
    """One Segment-compatible request: ``call`` is the endpoint's call, ``None`` for a batch."""
    svc = service(request)
    metrics = _source_metrics(request)
    received_at = datetime.now(UTC)
    authorization = request.headers.get("authorization")
    key: ApiKey | None = None
    checked: str | None = None
    try:
        if authorization and authorization.strip():  # refuse a bad header before reading the body
            checked = _presented_write_key(authorization, None)
            key = await run_in_threadpool(
                check_write_key, svc.engine, svc.settings.segment_write_keys, checked
            )
        raw = await read_raw_body(request, MAX_BATCH_BYTES)
        limit = MAX_BATCH_BYTES if call is None else MAX_EVENT_BYTES
        body = parse_json(decode_body(raw, request.headers.get("content-encoding"), limit))
        presented = _presented_write_key(authorization, body)
        if presented != checked:
            key = await run_in_threadpool(
                check_write_key, svc.engine, svc.settings.segment_write_keys, presented
            )
    except CredentialsError as err:
        return _segment_error(401, "invalid_write_key", str(err))
    except Refused as err:
        if err.status == 413:
            svc.metrics.reject("size", source="segment")
        return _segment_error(err.status, err.code, err.message)
    if key is not None:
        request.state.api_key = key
    if call is None:
        return await _segment_batch(request, svc, metrics, body, received_at)
    return await _segment_one(request, svc, metrics, body, call, received_at)


def _ignored_reason(result: AdapterResult) -> str | None:
    """Why a message stores no event (an unmapped name, ...); ``None`` if it does (or is an identify)."""
    if result.identify is not None:
        return None
    if not result.events:
        return result.ignored or "nothing to count"
    return None


def _count_ignored(results: Sequence[AdapterResult], metrics: SourceMetrics) -> None:
    for _ in results:
        metrics.ignored.labels("segment").inc()


def _count_identify(identify: Mapping[str, Any], metrics: SourceMetrics) -> None:
    metrics.identify.inc()
    metrics.traits.inc(len(identify.get("traits") or {}))


async def _segment_one(
    request: Request,
    svc: ServiceState,
    metrics: SourceMetrics,
    body: Any,
    call: str,
    received_at: datetime,
) -> JSONResponse:
    try:
        result = from_segment(body, call=call, received_at=received_at)
    except AdapterError as err:
        svc.metrics.reject(metric_reason(err.field), source="segment")
        request.state.ingest = {"source": "segment", "outcome": "rejected"}
        return _segment_error(422, "invalid_message", str(err), errors=[_adapter_error(err)])
    if result.identify is not None:
        try:
            warnings = await run_in_threadpool(store_identify, svc.engine, result.identify, source="segment")
        except sa.exc.SQLAlchemyError as err:
            return _unavailable(err)
        _count_identify(result.identify, metrics)
        request.state.ingest = {"source": "segment", "outcome": "profile"}
        event_id = result.identify.get("event_id")
        return JSONResponse(
            {"success": True, "status": "profile", "event_id": event_id, "warnings": warnings}
        )
    reason = _ignored_reason(result)
    if reason is not None:
        _count_ignored([result], metrics)
        request.state.ingest = {"source": "segment", "outcome": "ignored"}
        return JSONResponse({"success": True, "status": "ignored", "event_id": None, "reason": reason})
    try:
        results = await run_in_threadpool(
            ingest, svc.engine, result.events, svc.settings, source="segment", now=received_at, atomic=True
        )
    except sa.exc.SQLAlchemyError as err:
        return _unavailable(err)
    svc.metrics.count_results(results, source="segment")
    rejected = [e.as_dict() for r in results if r.status == "rejected" for e in r.errors]
    if rejected:
        request.state.ingest = {"source": "segment", "outcome": "rejected"}
        return _segment_error(
            422, "invalid_message", "; ".join(_describe(e) for e in rejected), errors=rejected
        )
    status = "accepted" if any(r.status == "accepted" for r in results) else "duplicate"
    request.state.ingest = {"source": "segment", "outcome": status}
    return JSONResponse({"success": True, "status": status, "event_id": results[0].event_id})


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


async def _segment_batch(
    request: Request, svc: ServiceState, metrics: SourceMetrics, body: Any, received_at: datetime
) -> JSONResponse:
    messages = body.get("batch") if isinstance(body, dict) else None
    if isinstance(messages, list) and len(messages) > MAX_BATCH_EVENTS:
        svc.metrics.reject("size", source="segment", count=len(messages))
        return _segment_error(
            413, "payload_too_large", f"the batch has {len(messages)} messages; at most {MAX_BATCH_EVENTS}"
        )
    try:
        items = from_segment_batch(body, received_at=received_at)
    except AdapterError as err:
        return _segment_error(422, "invalid_request", str(err), errors=[_adapter_error(err)])
    messages = body["batch"]  # a list: from_segment_batch checked it

    outcomes: list[_Outcome | None] = [None] * len(items)
    to_ingest: list[EventIn] = []
    positions: list[int] = []
    ignored: list[AdapterResult] = []
    identifies: list[tuple[int, dict[str, Any]]] = []
    reject_reasons: list[str] = []  # counted once the request succeeds, like the stored events
    for item in items:
        size = _json_size(messages[item.index])
        if size > MAX_EVENT_BYTES:
            reject_reasons.append("size")
            message = f"message is {size / 1024:.1f} KB; the limit is {MAX_EVENT_BYTES // 1024} KB"
            error = {"loc": [], "msg": message, "type": "payload_too_large"}
            outcomes[item.index] = _Outcome(item.index, None, "rejected", [error])
        elif item.error is not None:
            reject_reasons.append(metric_reason(item.error.field))
            outcomes[item.index] = _Outcome(
                item.index, None, "rejected", [_adapter_error(item.error, drop=2)]
            )
        elif item.result is not None:
            reason = _ignored_reason(item.result)
            if item.result.identify is not None:
                identifies.append((item.index, item.result.identify))
            elif reason is not None:
                ignored.append(item.result)
                outcomes[item.index] = _Outcome(item.index, None, "ignored", reason=reason)
            else:
                for event in item.result.events:  # one per message; several would share the slot
                    to_ingest.append(event)
                    positions.append(item.index)
    if to_ingest:
        try:
            results = await run_in_threadpool(
                ingest, svc.engine, to_ingest, svc.settings, source="segment", now=received_at
            )
        except sa.exc.SQLAlchemyError as err:
            return _unavailable(err)
        svc.metrics.count_results(results, source="segment")
        for result, index in zip(results, positions, strict=True):
            outcomes[index] = _Outcome(
                index, result.event_id, result.status, [e.as_dict() for e in result.errors]
            )

    for index, identify in identifies:
        try:
            warnings = await run_in_threadpool(store_identify, svc.engine, identify, source="segment")
        except sa.exc.SQLAlchemyError as err:
            return _unavailable(err)
        _count_identify(identify, metrics)
        outcomes[index] = _Outcome(index, identify.get("event_id"), "profile", warnings=warnings)

    for name in reject_reasons:
        svc.metrics.reject(name, source="segment")
    _count_ignored(ignored, metrics)
    answered = [o for o in outcomes if o is not None]
    counts = {
        "accepted": sum(o.status == "accepted" for o in answered),
        "duplicates": sum(o.status == "duplicate" for o in answered),
        "ignored": sum(o.status == "ignored" for o in answered),
        "profiles": sum(o.status == "profile" for o in answered),
        "rejected": sum(o.status == "rejected" for o in answered),
    }
    request.state.ingest = {"source": "segment", **counts}
    return JSONResponse(
        {"success": counts["rejected"] == 0, **counts, "items": [o.as_dict() for o in answered]}
    )


def _segment_endpoint(call: str | None) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> JSONResponse:
        return await segment_call(request, call)

    endpoint.__name__ = f"segment_{call or 'batch'}"
    return endpoint


# --- webhooks -------------------------------------------------------------------------------
Verify = Callable[[bytes, Mapping[str, str], Sequence[str]], None]
Translate = Callable[[Any, Mapping[str, str], Engine], AdapterResult]


@dataclass(frozen=True)
class Webhook:
    """How one vendor's webhook is checked and read."""

    source: str
    label: str
    variable: str
    secrets: Callable[[ServiceState], Sequence[str]]
    verify: Verify
    translate: Translate
    ping: Callable[[bytes], bool] | None = None


def customer_for_order(engine: Engine, order_id: str, *, prefer_source: str) -> str | None:
    """The customer of the stored purchase with ``order_id`` (one from ``prefer_source`` first).

    Refund webhooks (Shopify's) name the order, not the customer. ``events.order_id`` has no
    index yet, so this scans; refunds are rare next to purchases.
    """
    e = events_table
    stmt = (
        sa.select(e.c.customer_id)
        .where(e.c.order_id == order_id, e.c.event_type == "purchase")
        .order_by(sa.case((e.c.source == prefer_source, 0), else_=1), e.c.occurred_at)
        .limit(1)
    )
    with engine.connect() as conn:
        found = conn.execute(stmt).scalar_one_or_none()
    return None if found is None else str(found)


def _stripe_verify(raw: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    verify_stripe_signature(raw, headers.get("stripe-signature"), list(secrets))


def _shopify_verify(raw: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    verify_shopify_hmac(raw, headers.get("x-shopify-hmac-sha256"), list(secrets))


def _woocommerce_verify(raw: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    verify_woocommerce_signature(raw, headers.get("x-wc-webhook-signature"), list(secrets))


def _shopify_translate(body: Any, headers: Mapping[str, str], engine: Engine) -> AdapterResult:
    def lookup(order_id: str) -> str | None:
        return customer_for_order(engine, order_id, prefer_source="shopify")

    return from_shopify(headers.get("x-shopify-topic"), body, customer_for_order=lookup)


WEBHOOKS = (
    Webhook(
        source="stripe",
        label="Stripe",
        variable="RFMFLOW_STRIPE_WEBHOOK_SECRET",
        secrets=lambda svc: svc.settings.stripe_webhook_secrets,
        verify=_stripe_verify,
        translate=lambda body, _headers, _engine: from_stripe(body),
    ),
    Webhook(
        source="shopify",
        label="Shopify",
        variable="RFMFLOW_SHOPIFY_WEBHOOK_SECRET",
        secrets=lambda svc: svc.settings.shopify_webhook_secrets,
        verify=_shopify_verify,
        translate=_shopify_translate,
    ),
    Webhook(
        source="woocommerce",
        label="WooCommerce",
        variable="RFMFLOW_WOOCOMMERCE_WEBHOOK_SECRET",
        secrets=lambda svc: (
            (svc.settings.woocommerce_webhook_secret,) if svc.settings.woocommerce_webhook_secret else ()
        ),
        verify=_woocommerce_verify,
        translate=lambda body, headers, _engine: from_woocommerce(headers.get("x-wc-webhook-topic"), body),
        ping=is_woocommerce_ping,
    ),
)


async def webhook_call(request: Request, hook: Webhook) -> JSONResponse:
    """Check, read and ingest one webhook delivery."""
    svc = service(request)
    metrics = _source_metrics(request)
    received_at = datetime.now(UTC)
    secrets = hook.secrets(svc)
    if not secrets:
        message = f"the {hook.label} webhook is not configured: set {hook.variable} (see docs/service.md)"
        return JSONResponse({"detail": message, "code": "not_configured"}, status_code=404)
    try:
        raw = await read_raw_body(request, MAX_WEBHOOK_BYTES)
    except Refused as err:
        svc.metrics.reject("size", source=hook.source)
        return JSONResponse({"detail": err.message, "code": err.code}, status_code=err.status)
    if hook.ping is not None and hook.ping(raw):  # written nothing, so nothing to verify
        metrics.ignored.labels(hook.source).inc()
        request.state.ingest = {"source": hook.source, "outcome": "ping"}
        return JSONResponse({"status": "ignored", "reason": f"{hook.label} ping", "events": []})
    try:
        hook.verify(raw, request.headers, secrets)
    except SignatureError as err:
        metrics.signature_failures.labels(hook.source, err.code).inc()
        log.warning("webhook signature refused", extra={"source": hook.source, "code": err.code})
        return JSONResponse({"detail": str(err), "code": err.code}, status_code=400)
    try:
        payload = parse_json(raw)
        result = await run_in_threadpool(hook.translate, payload, request.headers, svc.engine)
    except Refused as err:
        return JSONResponse({"detail": err.message, "code": err.code}, status_code=err.status)
    except AdapterError as err:
        svc.metrics.reject(metric_reason(err.field), source=hook.source)
        request.state.ingest = {"source": hook.source, "outcome": "rejected"}
        return JSONResponse({"detail": [_webhook_error(err)], "status": "rejected"}, status_code=422)
    except sa.exc.SQLAlchemyError as err:  # the Shopify refund's order lookup
        return _unavailable(err)
    if not result.events:
        metrics.ignored.labels(hook.source).inc()
        request.state.ingest = {"source": hook.source, "outcome": "ignored"}
        return JSONResponse(
            {"status": "ignored", "reason": result.ignored or "nothing to count", "events": []}
        )
    try:
        results = await run_in_threadpool(
            ingest, svc.engine, result.events, svc.settings, source=hook.source, now=received_at, atomic=True
        )
    except sa.exc.SQLAlchemyError as err:
        return _unavailable(err)
    svc.metrics.count_results(results, source=hook.source)
    if result.traits and not any(r.status == "rejected" for r in results):
        first = result.events[0]
        try:
            warnings = await run_in_threadpool(
                store_traits,
                svc.engine,
                first.customer_id,
                result.traits,
                at=first.occurred_at,
                source=hook.source,
            )
        except sa.exc.SQLAlchemyError as err:  # the events are stored; the vendor's retry is a duplicate
            return _unavailable(err)
        for warning in warnings:
            log.info("webhook trait not used", extra={"source": hook.source, "warning": warning})
    return _webhook_answer(request, hook, results)


def _webhook_error(err: AdapterError) -> dict[str, Any]:
    loc = path_loc(err.field)
    if loc[:1] not in (["header"], ["body"]):
        loc = ["body", *loc]
    return {"loc": loc, "msg": err.reason, "type": "invalid_payload"}


def _webhook_answer(request: Request, hook: Webhook, results: list[ItemResult]) -> JSONResponse:
    listed = [{"event_id": r.event_id, "status": r.status} for r in results]
    rejected = [r for r in results if r.status == "rejected"]
    if rejected:
        request.state.ingest = {"source": hook.source, "outcome": "rejected"}
        detail = [_event_error(r.index, e) for r in rejected for e in r.errors]
        return JSONResponse({"detail": detail, "status": "rejected", "events": listed}, status_code=422)
    status = "accepted" if any(r.status == "accepted" for r in results) else "duplicate"
    request.state.ingest = {
        "source": hook.source,
        "outcome": status,
        "accepted": sum(r.status == "accepted" for r in results),
        "duplicates": sum(r.status == "duplicate" for r in results),
    }
    return JSONResponse({"status": status, "events": listed})


def _event_error(index: int, error: FieldError) -> dict[str, Any]:
    return {"loc": ["event", index, *error.loc], "msg": error.msg, "type": error.type}


def _webhook_endpoint(hook: Webhook) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> JSONResponse:
        return await webhook_call(request, hook)

    endpoint.__name__ = f"webhook_{hook.source}"
    return endpoint


# --- registration ---------------------------------------------------------------------------
_JSON_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}

_SEGMENT_DOC = {
    "track": "A Segment `track` call. `Order Completed` is a purchase (`properties.total`, else `revenue`), "
    "`Order Refunded` a refund; other mapped names (`Email Opened`, `Signed Up`, ...) are their types; "
    "unmapped names are answered `ignored`.",
    "identify": "A Segment `identify` call: its traits are merged into the customer's profile.",
    "page": "A Segment `page` call: a `visit`.",
    "screen": "A Segment `screen` call: a `visit`.",
    "group": "A Segment `group` call: answered `ignored`.",
    "alias": "A Segment `alias` call: answered `ignored` (aliases are not applied).",
    None: 'A Segment batch (`{"batch": [...], "sentAt": ...}`, up to 1,000 messages and 500 KB), as '
    "the SDKs send it; one result per message (`accepted`, `duplicate`, `ignored`, `rejected`).",
}
_SEGMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": '`{"success": true, "status": ...}` (a batch: counts and one item per message)'},
    400: {"description": "malformed JSON or gzip"},
    401: {"description": "missing or unknown write key"},
    403: {"description": "the key is not an ingest key"},
    413: {"description": "a message over 32 KB, a request over 500 KB or 1,000 messages"},
    422: {"description": "a message that cannot be read: `{success: false, code, message, errors}`"},
}
_WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": '`{"status": "accepted" | "duplicate" | "ignored", "events": [...]}`'},
    400: {"description": "missing, malformed or mismatched signature, stale timestamp, malformed JSON"},
    404: {"description": "the webhook's secret is not configured"},
    413: {"description": "a body over 1 MB"},
    422: {"description": "a payload that cannot be read or an event rfmflow rejects; nothing written"},
}
_WEBHOOK_DOC = {
    "stripe": "Stripe events, signed with `Stripe-Signature` (5 minutes' tolerance): "
    "`payment_intent.succeeded` is a purchase, `charge.refunded` a refund; other types are ignored.",
    "shopify": "Shopify webhooks, signed with `X-Shopify-Hmac-Sha256`, topic in `X-Shopify-Topic`: "
    "`orders/create` is a purchase, `refunds/create` a refund of the stored order's customer.",
    "woocommerce": "WooCommerce webhooks, signed with `X-WC-Webhook-Signature`, topic in "
    "`X-WC-Webhook-Topic`: paid `order.created` / `order.updated` are purchases, their `refunds` refunds; "
    "the ping sent when a webhook is saved is answered 200.",
}


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""
    state: ServiceState = app.state.service
    app.state.source_metrics = SourceMetrics.register(state.metrics.registry)
    for call, (path, short) in SEGMENT_PATHS.items():
        endpoint = _segment_endpoint(call)
        app.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            tags=["segment"],
            summary=f"Segment-compatible {call or 'batch'} (write key as the basic-auth user)",
            description=_SEGMENT_DOC[call],
            responses=_SEGMENT_RESPONSES,
            openapi_extra={"requestBody": _JSON_BODY},
        )
        app.add_api_route(short, endpoint, methods=["POST"], include_in_schema=False)
    for hook in WEBHOOKS:
        app.add_api_route(
            f"/v1/webhooks/{hook.source}",
            _webhook_endpoint(hook),
            methods=["POST"],
            tags=["webhooks"],
            summary=f"{hook.label} webhook (signature checked with {hook.variable})",
            description=_WEBHOOK_DOC[hook.source],
            responses=_WEBHOOK_RESPONSES,
            openapi_extra={"requestBody": _JSON_BODY},
        )

"""The links customers follow from messages: unsubscribe and tracked clicks. No API key: the
signed token (:mod:`rfmflow.automation.links`) is the permission.

==========================  =============================================================
endpoint                    what
==========================  =============================================================
``GET /u/{token}``          a small page (self-contained HTML) asking to confirm
``POST /u/{token}``         opt the message's customer out of its channel: consent
                            ``opted_out``, reason ``unsubscribed``, actor ``link``; also the
                            RFC 8058 one-click POST mail providers send
                            (``List-Unsubscribe=One-Click``); again is no change
``GET /l/{token}``          record a ``click`` event for the message's customer (event id
                            ``click:<outbox id>``: once per message, however often clicked;
                            property ``outbox_id`` marks the message ``clicked_at``), then
                            302 to the link's target
==========================  =============================================================

A damaged or forged token answers 400, a token whose message is gone (or erased) 404, each
with a short page saying so; never a 500.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from rfmflow.automation.consent import CHANNELS, set_consent
from rfmflow.automation.links import BadToken, LinkSigner, Unsubscribe
from rfmflow.service.app import ServiceDep, ServiceState
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import outbox
from rfmflow.service.events import EventIn
from rfmflow.service.ingest import ingest
from rfmflow.service.secret_key import derived_key, load_secret_key

CHANNEL_NAMES = {"email": "e-mails", "telegram": "Telegram messages", "webhook": "messages"}


def signer_for(request: Request, svc: ServiceState) -> LinkSigner:
    """This installation's link signer (built once per app)."""
    found: LinkSigner | None = getattr(request.app.state, "link_signer", None)
    if found is None:
        key = derived_key(load_secret_key(svc.settings), "links")
        found = LinkSigner(key, svc.settings.public_url)
        request.app.state.link_signer = found
    return found


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A small self-contained page (no scripts, styles inline, nothing fetched)."""
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem;
  color: #1f2933; line-height: 1.5; }}
h1 {{ font-size: 1.4rem; }}
button {{ font-size: 1rem; padding: .6rem 1.2rem; border: 0; border-radius: .3rem; background: #1f6feb;
  color: #fff; cursor: pointer; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""
    return HTMLResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


def _message_row(conn: Connection, outbox_id: int) -> Any:
    o = outbox.c
    return conn.execute(sa.select(o.id, o.customer_id, o.channel).where(o.id == outbox_id)).one_or_none()


def _bad_link(reason: str) -> HTMLResponse:
    return page(
        "This link does not work", f"<p>{html.escape(reason)}. Please use the link from the message.</p>", 400
    )


def _gone() -> HTMLResponse:
    return page("This link has expired", "<p>The message this link came from is no longer known.</p>", 404)


def _unsubscribe_link(request: Request, svc: ServiceDep, token: str) -> Unsubscribe | HTMLResponse:
    """The link a genuine unsubscribe token names, or the page saying why it does not work."""
    try:
        link = signer_for(request, svc).read_unsubscribe(token)
    except BadToken as err:
        return _bad_link(str(err))
    if link.channel not in CHANNELS:
        return _bad_link("the link names an unknown channel")
    return link


def register(app: FastAPI) -> None:
    @app.get("/u/{token}", include_in_schema=False)
    async def unsubscribe_page(request: Request, svc: ServiceDep, token: str) -> Response:
        link = _unsubscribe_link(request, svc, token)
        if isinstance(link, HTMLResponse):
            return link

        def look() -> Any:
            with svc.engine.connect() as conn:
                return _message_row(conn, link.outbox_id)

        if await run_in_threadpool(look) is None:
            return _gone()
        what = CHANNEL_NAMES.get(link.channel, "messages")
        return page(
            "Unsubscribe",
            f"<p>Stop receiving {what} from us?</p>"
            f'<form method="post" action="/u/{html.escape(token)}">'
            '<button type="submit" name="confirm" value="yes">Unsubscribe</button></form>',
        )

    @app.post("/u/{token}", include_in_schema=False)
    async def unsubscribe(request: Request, svc: ServiceDep, token: str) -> Response:
        link = _unsubscribe_link(request, svc, token)
        if isinstance(link, HTMLResponse):
            return link

        def work(conn: Connection) -> bool | None:
            row = _message_row(conn, link.outbox_id)
            if row is None:
                return None
            set_consent(
                conn,
                row.customer_id,
                link.channel,
                "opted_out",
                "unsubscribed",
                actor="link",
                at=datetime.now(UTC),
            )
            return True

        if await run_in_threadpool(run_write, svc.engine, work) is None:
            return _gone()
        what = CHANNEL_NAMES.get(link.channel, "messages")
        return page("You are unsubscribed", f"<p>You will not receive {what} from us any more.</p>")

    @app.get("/l/{token}", include_in_schema=False)
    async def click(request: Request, svc: ServiceDep, token: str) -> Response:
        signer = signer_for(request, svc)
        try:
            link = signer.read_click(token)
        except BadToken as err:
            return _bad_link(str(err))

        def work(conn: Connection) -> bool:
            row = _message_row(conn, link.outbox_id)
            if row is None:
                return False
            event = EventIn(
                event_id=f"click:{link.outbox_id}",
                customer_id=row.customer_id,
                type="click",
                occurred_at=datetime.now(UTC),
                properties={"outbox_id": link.outbox_id, "url": link.url[:2000]},
            )
            ingest(conn, [event], svc.settings, source="link")
            return True

        # The target is signed, so it is where the message pointed; a gone message still goes there.
        await run_in_threadpool(run_write, svc.engine, work)
        return RedirectResponse(link.url, status_code=302, headers={"Cache-Control": "no-store"})


__all__ = ["page", "register", "signer_for"]

"""Signed links in messages, through the real HTTP server and SMTP (aiosmtpd): the received
mail's List-Unsubscribe URL, POSTed, opts the customer out (and the next send is skipped for
consent); tracked links count one click per message and redirect; forged tokens are 400 — on
SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from engine_helpers import (
    Inbox,
    automation_settings,
    decide_now,
    dispatch,
    rows,
    service_fixtures,
    smtp_inbox,
)
from engine_helpers import set_profile as set_traits
from service_helpers import Server, post_events, shop_purchases

from rfmflow.automation.links import UNSUBSCRIBE_MARK, LinkSigner
from rfmflow.automation.senders import prepare
from rfmflow.automation.settings import AutomationSettings
from rfmflow.service.secret_key import derived_key, load_secret_key

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server

NEWSLETTER = """\
name: newsletter
trigger: {tag_added: newsletter}
reentry: always
steps:
  - send:
      channel: email
      subject: "News for {{ first_name }}"
      text: "Hi {{ first_name }}, new arrivals: https://shop.example/new?x=1. Leave: {{ unsubscribe_url }}"
      html: '<p><a href="https://shop.example/new?x=1">New</a> <img src="https://cdn.example/i.png"></p>'
"""


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_inbox() as running:
        yield running


def _auto(server: Server, smtp_port: int) -> AutomationSettings:
    key = derived_key(load_secret_key(server.settings), "links")
    return automation_settings(smtp_port=smtp_port, public_url=server.url, links_key=key)


def _tag(server: Server, customer_id: str, change: str) -> None:
    with server.client("admin") as admin:
        response = admin.request(
            "POST" if change == "add" else "DELETE",
            f"/v1/customers/{customer_id}/tags" + ("" if change == "add" else "/newsletter"),
            json={"tags": ["newsletter"]} if change == "add" else None,
        )
    assert response.status_code in (200, 201), response.text


def test_unsubscribe_and_clicks_through_the_server(server: Server, inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    post_events(server, shop_purchases(datetime.now(UTC), 3))
    cid = "c001"
    set_traits(server, cid, name="Ada Lovelace", email="ada@example.com")
    with server.client("admin") as admin:
        assert admin.post("/v1/tags", json={"name": "newsletter"}).status_code == 201
        assert admin.post("/v1/workflows", json={"yaml": NEWSLETTER}).status_code == 201
        assert admin.post("/v1/workflows/newsletter/activate").status_code == 200
    _tag(server, cid, "add")
    auto = _auto(server, port)
    decide_now(server.engine, server.settings, auto)
    assert dispatch(server.engine, auto).outcomes == {"delivered": 1}

    (_envelope, mail) = handler.messages[0]
    header = mail["List-Unsubscribe"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = re.fullmatch(r"<(http://[^>]+/u/[^>]+)>", header)
    assert match, header
    unsubscribe_url = match.group(1)
    assert unsubscribe_url.startswith(server.url + "/u/")
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert unsubscribe_url in text and UNSUBSCRIBE_MARK not in text and "https://shop.example" not in text
    assert "https://cdn.example/i.png" in html  # images are not rewritten
    (click_url,) = re.findall(r"http://[^\s\"<>]+/l/[\w-]+\.[\w-]+", text)
    assert text.count("/l/") == 1 and html.count("/l/") == 1

    with httpx.Client(timeout=30) as web:
        page = web.get(unsubscribe_url)
        assert page.status_code == 200 and "<form" in page.text and "Unsubscribe" in page.text
        forged = unsubscribe_url[:-3] + ("AAA" if not unsubscribe_url.endswith("AAA") else "BBB")
        bad = web.post(forged, content=b"List-Unsubscribe=One-Click")
        assert bad.status_code == 400 and "signature" in bad.text
        assert web.get(server.url + "/u/not-a-token").status_code == 400
        assert web.get(server.url + "/u/%%%.%%%").status_code == 400
        gone = LinkSigner(auto.links_key, server.url).unsubscribe_url(999999, "email")
        assert web.post(gone).status_code == 404

        done = web.post(
            unsubscribe_url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200 and "unsubscribed" in done.text
        assert web.post(unsubscribe_url).status_code == 200  # again: no change, no error

        # clicks: 302 to the target, one click event per message however often clicked
        for _ in range(2):
            hop = web.get(click_url, follow_redirects=False)
            assert hop.status_code == 302 and hop.headers["location"] == "https://shop.example/new?x=1"
        forged_click = click_url[:-2] + ("AA" if not click_url.endswith("AA") else "BB")
        assert web.get(forged_click, follow_redirects=False).status_code == 400
        evil = LinkSigner(b"another installation's key", server.url).click_url(1, "https://evil.example/")
        assert web.get(evil, follow_redirects=False).status_code == 400

    with server.client("admin") as admin:
        consent = admin.get(f"/v1/customers/{cid}/consent").json()
    email = next(c for c in consent["consent"] if c["channel"] == "email")
    assert (email["status"], email["reason"], email["actor"]) == ("opted_out", "unsubscribed", "link")
    assert [h["actor"] for h in consent["history"]] == ["link"]

    clicks = rows(server.engine, "SELECT event_id, event_type FROM events WHERE event_type = 'click'")
    assert len(clicks) == 1 and clicks[0].event_id.startswith("click:")
    decide_now(server.engine, server.settings, auto)  # the event feed marks the message clicked
    with server.client("analyst") as analyst:
        results = analyst.get("/v1/workflows/newsletter/results").json()
    assert results["totals"]["clicked"] == 1 and results["totals"]["delivered"] == 1

    # the next message to this customer is skipped for consent
    _tag(server, cid, "remove")
    _tag(server, cid, "add")
    assert decide_now(server.engine, server.settings, auto)["tag_changes"] == 1
    dispatch(server.engine, auto)
    statuses = rows(server.engine, "SELECT status, reason FROM outbox ORDER BY id")
    assert [s.status for s in statuses] == ["delivered", "skipped"]
    assert "opted out of email" in statuses[1].reason
    assert len(handler.messages) == 1


def test_prepare_tracks_telegram_buttons_and_fills_the_mark() -> None:
    signer = LinkSigner(b"k" * 32, "https://rfm.example")
    message: dict[str, Any] = {
        "text": f"stop: {UNSUBSCRIBE_MARK}",
        "buttons": [["Shop", "https://shop.example/a"], ["Menu", "menu:1"]],
    }
    ready = prepare("telegram", "42", message, signer)
    assert ready["text"] == f"stop: {signer.unsubscribe_url(42, 'telegram')}"
    (label, url), second = ready["buttons"]
    assert label == "Shop" and signer.read_click(url.rsplit("/", 1)[1]).url == "https://shop.example/a"
    assert second == ["Menu", "menu:1"]
    untracked = prepare("telegram", "42", message, signer, track=False)
    assert untracked["buttons"] == message["buttons"]
    plain = prepare("email", "7", {"text": "Hi {x}", "subject": "s"}, None)
    assert plain["text"] == "Hi {x}" and "unsubscribe_url" not in plain
    mailed = prepare("email", "7", {"text": "see https://a.example/b.", "subject": "s"}, signer)
    assert mailed["text"].startswith("see https://rfm.example/l/") and mailed["text"].count("/u/") == 1

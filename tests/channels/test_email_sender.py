"""The e-mail sender against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from rfmflow.channels.email import EmailMessage, EmailSender, SmtpSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Inbox:
    """An aiosmtpd handler: keeps what it accepts; refuses some recipients; can hang up."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []
        self.hang_up_on_data = False

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 no such user here"
        if address.startswith("busy@"):
            return "451 4.3.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.hang_up_on_data:
            server.transport.close()
            return "421 closing"
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.messages.append((envelope, message_from_bytes(content, policy=policy.default)))
        return "250 Message accepted"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def sender(port: int, **changes: Any) -> EmailSender:
    settings = SmtpSettings(
        host="127.0.0.1",
        port=port,
        sender="Shop <news@shop.example>",
        unsubscribe_mailto="unsub@shop.example",
        timeout=5,
        **changes,
    )
    return EmailSender(settings)


def test_delivers_with_unsubscribe_headers(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    message = EmailMessage(
        id="out-17",
        to="ada@example.com",
        subject="20% off, Ada",
        text="Hello Ada\nUnsubscribe: https://shop.example/u/abc",
        html="<p>Hello Ada</p>",
        unsubscribe_url="https://shop.example/u/abc",
    )
    outcome = asyncio.run(sender(port).send(message))
    assert outcome.status == "delivered" and outcome.sent_at is not None
    ((envelope, mail),) = handler.messages
    assert envelope.mail_from == "news@shop.example" and envelope.rcpt_tos == ["ada@example.com"]
    assert mail["Subject"] == "20% off, Ada" and mail["From"] == "Shop <news@shop.example>"
    assert (
        mail["List-Unsubscribe"]
        == "<https://shop.example/u/abc>, <mailto:unsub@shop.example?subject=unsubscribe>"
    )
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Message-ID"] == "<rfmflow.out-17@shop.example>"
    parts = {
        part.get_content_type(): part.get_payload(decode=True)
        for part in mail.walk()
        if not part.is_multipart()
    }
    assert parts["text/plain"].decode().startswith("Hello Ada")
    assert parts["text/html"].strip() == b"<p>Hello Ada</p>"


def test_refusals_and_the_same_id_twice(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    s = sender(port)

    async def go() -> list[Any]:
        return [
            outcome
            async for outcome in s.send_many(
                [
                    EmailMessage(id="a", to="gone@example.com", subject="s", text="t"),
                    EmailMessage(id="b", to="busy@example.com", subject="s", text="t"),
                    EmailMessage(id="c", to="ok@example.com", subject="s", text="t"),
                    EmailMessage(id="c", to="ok@example.com", subject="s", text="t"),
                ]
            )
        ]

    gone, busy, ok, again = asyncio.run(go())
    assert (gone.status, gone.details["bounced"], gone.details["smtp_code"]) == ("failed", True, 550)
    assert "no such user" in (gone.reason or "")
    assert busy.status == "deferred" and busy.retry_at is not None and "451" in (busy.reason or "")
    assert ok.status == "delivered" and again.status == "duplicate"
    assert [env.rcpt_tos for env, _ in handler.messages] == [["ok@example.com"]]


def test_no_server_is_deferred_and_a_broken_data_phase_is_unknown(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    nobody = asyncio.run(
        sender(free_port()).send(EmailMessage(id="x", to="a@example.com", subject="s", text="t"))
    )
    assert nobody.status == "deferred" and nobody.retry_at is not None
    handler.hang_up_on_data = True
    broken = asyncio.run(sender(port).send(EmailMessage(id="y", to="a@example.com", subject="s", text="t")))
    assert broken.status == "unknown" and "handed over" in (broken.reason or "")
    assert handler.messages == []

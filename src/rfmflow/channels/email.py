"""E-mail over SMTP, with the unsubscribe headers mail providers expect.

Each message carries ``List-Unsubscribe`` (the one-click URL and, when configured, a
``mailto:``) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), a
``Message-ID`` made from the outbox id (so a receiving server or the person can tell a
resend), and a plain-text part with an optional HTML alternative.

Outcomes (the :class:`~rfmflow.channels.outbound.SendOutcome` statuses):

- ``delivered``: the server accepted the message (``250`` after ``DATA``);
- ``failed``: a permanent refusal (``5xx``): of the recipient (``details["bounced"]``: the
  address is undeliverable; consent records it as ``bounced``), of the sender or the content,
  or the login;
- ``deferred``: a temporary refusal (``4xx``) or no connection (refused, unknown host, a time
  out before the message was handed over): nothing was delivered, send again after
  ``retry_at``;
- ``unknown``: the connection broke after the message was handed over (during or after
  ``DATA``): it may have been delivered, so it is not resent blindly;
- ``duplicate``: this sender already took a message with the same id.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Literal

from rfmflow.channels.outbound import SendOutcome, one_by_one

Security = Literal["none", "starttls", "ssl"]
WIRE = policy.SMTP.clone(max_line_length=998)
"""CRLF line ends; headers folded only past SMTP's line limit (keeps List-Unsubscribe whole)."""
RETRY_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send: the server, its security, the login and the From address."""

    host: str
    port: int = 25
    security: Security = "none"
    username: str | None = None
    password: str | None = None
    sender: str = "rfmflow@localhost"
    """The From address (``Shop <news@shop.example>`` or a bare address)."""
    unsubscribe_mailto: str | None = None
    """An address that unsubscribes whoever writes to it (added to ``List-Unsubscribe``)."""
    timeout: float = 30.0


@dataclass(frozen=True)
class EmailMessage:
    """One e-mail to one recipient; ``id`` is the outbox id (never sent twice by a sender)."""

    id: str
    to: str
    subject: str
    text: str
    html: str | None = None
    unsubscribe_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class _Phase:
    """How far a delivery got: before ``DATA`` nothing can have been delivered."""

    def __init__(self) -> None:
        self.handed_over = False


class EmailSender:
    """Sends :class:`EmailMessage` values over SMTP (one connection per message, in a thread)."""

    channel = "email"

    def __init__(self, settings: SmtpSettings, *, concurrency: int = 4) -> None:
        self.settings = settings
        self._taken: set[str] = set()
        self._slots = asyncio.Semaphore(concurrency)
        _, address = parseaddr(settings.sender)
        self._domain = address.rpartition("@")[2] or "localhost"

    def mime(self, message: EmailMessage) -> MimeMessage:
        """The message as it goes on the wire (headers included)."""
        mime = MimeMessage()
        mime["From"] = self.settings.sender
        mime["To"] = formataddr(("", message.to))
        mime["Subject"] = message.subject
        mime["Date"] = format_datetime(datetime.now(UTC))
        mime["Message-ID"] = f"<rfmflow.{message.id}@{self._domain}>"
        targets = []
        if message.unsubscribe_url:
            targets.append(f"<{message.unsubscribe_url}>")
        if self.settings.unsubscribe_mailto:
            targets.append(f"<mailto:{self.settings.unsubscribe_mailto}?subject=unsubscribe>")
        if targets:
            mime["List-Unsubscribe"] = ", ".join(targets)
        if message.unsubscribe_url:
            mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        for name, value in message.headers.items():
            mime[name] = value
        mime.set_content(message.text)
        if message.html:
            mime.add_alternative(message.html, subtype="html")
        return mime

    async def send(self, message: EmailMessage) -> SendOutcome:
        if message.id in self._taken:
            return SendOutcome(message.id, "duplicate", reason="this message id was already taken")
        self._taken.add(message.id)
        async with self._slots:
            return await asyncio.to_thread(self._deliver, message)

    def send_many(
        self, messages: Iterable[EmailMessage] | AsyncIterable[EmailMessage]
    ) -> AsyncIterator[SendOutcome]:
        return one_by_one(self.send, messages)

    def _deliver(self, message: EmailMessage) -> SendOutcome:
        phase = _Phase()
        now = datetime.now(UTC)
        try:
            self._transmit(self.mime(message), message.to, phase)
        except smtplib.SMTPRecipientsRefused as err:
            code, text = next(iter(err.recipients.values()))
            return _refused(message.id, code, text, now, bounced=True)
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError, smtplib.SMTPHeloError) as err:
            return _refused(message.id, err.smtp_code, err.smtp_error, now, bounced=False)
        except smtplib.SMTPAuthenticationError as err:
            return SendOutcome(
                message.id, "failed", reason=f"SMTP login refused: {_text(err.smtp_error)}", attempts=1
            )
        except smtplib.SMTPNotSupportedError as err:
            return SendOutcome(
                message.id, "failed", reason=f"the SMTP server does not support it: {err}", attempts=1
            )
        except (smtplib.SMTPException, OSError) as err:  # disconnects, time-outs, refused connections
            if phase.handed_over:
                return SendOutcome(
                    message.id,
                    "unknown",
                    reason=f"the connection broke after the message was handed over: {_describe(err)}",
                    attempts=1,
                )
            return SendOutcome(
                message.id,
                "deferred",
                reason=f"no delivery: {_describe(err)}",
                retry_at=now + RETRY_AFTER,
                attempts=1,
            )
        return SendOutcome(message.id, "delivered", sent_at=datetime.now(UTC), attempts=1)

    def _transmit(self, mime: MimeMessage, to: str, phase: _Phase) -> None:
        s = self.settings
        smtp: smtplib.SMTP
        if s.security == "ssl":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password or "")
            _, from_address = parseaddr(s.sender)
            code, reply = smtp.mail(from_address)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, from_address)
            code, reply = smtp.rcpt(to)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({to: (code, reply)})
            phase.handed_over = True
            code, reply = smtp.data(mime.as_bytes(policy=WIRE))
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def _describe(err: BaseException) -> str:
    return str(err) or type(err).__name__


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _refused(message_id: str, code: int, text: bytes | str, now: datetime, *, bounced: bool) -> SendOutcome:
    reason = f"{code} {_text(text)}".strip()
    if 400 <= code < 500:
        return SendOutcome(
            message_id,
            "deferred",
            reason=f"temporarily refused: {reason}",
            retry_at=now + RETRY_AFTER,
            attempts=1,
        )
    return SendOutcome(
        message_id,
        "failed",
        reason=f"refused: {reason}",
        attempts=1,
        details={"bounced": bounced, "smtp_code": code},
    )


__all__ = ["EmailMessage", "EmailSender", "SmtpSettings"]

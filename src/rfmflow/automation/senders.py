"""The channels the outbox sends through, built from the automation settings.

:class:`ChannelSenders` turns an outbox row (channel, recipient, rendered message) into the
channel's message type and sends it through the channel's sender (Telegram over the Bot API,
e-mail over SMTP, signed webhooks). A channel that is not configured is absent: its rows wait.
Tests and the benchmark may hand in their own senders (a fake at the port).

Before a message goes out, its links are made (:func:`prepare`, with the installation's
:class:`~rfmflow.automation.links.LinkSigner` when ``public_url`` and the links key are set):
``{{ unsubscribe_url }}`` becomes the message's signed ``/u/<token>`` link (an e-mail also
carries it in ``List-Unsubscribe``, and as a last line when its text does not show it), and
the URLs in an e-mail's text, its HTML ``href`` attributes and Telegram's URL buttons go
through ``/l/<token>`` so a click is counted (``RFMFLOW_TRACK_LINKS=off`` leaves them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from rfmflow.automation.links import UNSUBSCRIBE_MARK, LinkSigner
from rfmflow.automation.settings import AutomationSettings
from rfmflow.channels.outbound import OutboundMessage, SendOutcome

SendFn = Callable[[str, str, Mapping[str, Any]], Awaitable[SendOutcome]]
"""``send(message_id, recipient, message)`` for one channel."""


class ChannelSenders:
    """Send functions per channel (``telegram``, ``email``, ``webhook``), opened as a context."""

    def __init__(self, settings: AutomationSettings, *, custom: Mapping[str, SendFn] | None = None) -> None:
        self.settings = settings
        self._custom = dict(custom or {})
        self._send: dict[str, SendFn] = {}
        self._stack = AsyncExitStack()

    @property
    def channels(self) -> set[str]:
        return set(self._send)

    async def __aenter__(self) -> ChannelSenders:
        s = self.settings
        self._send.update(self._custom)
        if "telegram" not in self._send and s.telegram_token:
            from rfmflow.channels.telegram_sender import TelegramSender

            telegram = await self._stack.enter_async_context(
                TelegramSender.for_token(s.telegram_token, base_url=s.telegram_api_url)
            )

            async def send_telegram(mid: str, recipient: str, message: Mapping[str, Any]) -> SendOutcome:
                markup = _keyboard(message.get("buttons") or [])
                return await telegram.send(
                    OutboundMessage(
                        id=mid,
                        chat_id=_chat(recipient),
                        text=str(message.get("text", "")),
                        reply_markup=markup,
                    )
                )

            self._send["telegram"] = send_telegram
        if "email" not in self._send and s.smtp_host:
            from rfmflow.channels.email import EmailMessage, EmailSender, SmtpSettings

            email = EmailSender(SmtpSettings(host=s.smtp_host, port=s.smtp_port, sender=s.smtp_from))

            async def send_email(mid: str, recipient: str, message: Mapping[str, Any]) -> SendOutcome:
                return await email.send(
                    EmailMessage(
                        id=mid,
                        to=recipient,
                        subject=str(message.get("subject", "")),
                        text=str(message.get("text", "")),
                        html=str(message.get("html") or "") or None,
                        unsubscribe_url=message.get("unsubscribe_url") or None,
                    )
                )

            self._send["email"] = send_email
        if "webhook" not in self._send and s.webhook_url:
            from rfmflow.channels.webhook import WebhookMessage, WebhookSender

            webhook = WebhookSender(attempts=3, first_delay=0.5)

            async def send_webhook(mid: str, recipient: str, message: Mapping[str, Any]) -> SendOutcome:
                payload = {"id": mid, **dict(message.get("payload") or {}), "text": message.get("text", "")}
                return await webhook.send(
                    WebhookMessage(id=mid, url=recipient, payload=payload, secret=s.webhook_secret)
                )

            self._send["webhook"] = send_webhook
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def send(self, channel: str, mid: str, recipient: str, message: Mapping[str, Any]) -> SendOutcome:
        signer = self.settings.link_signer()
        ready = prepare(channel, mid, message, signer, track=self.settings.track_links)
        return await self._send[channel](mid, recipient, ready)


UNSUBSCRIBE_FOOTER = "\n\n--\nTo stop these e-mails: {url}"


def prepare(
    channel: str, mid: str, message: Mapping[str, Any], signer: LinkSigner | None, *, track: bool = True
) -> dict[str, Any]:
    """The message as it is sent: the unsubscribe link in place of its mark, and tracked URLs.

    ``mid`` is the outbox id; without a ``signer`` (or for an id that is not a row's) the mark
    becomes empty text and the URLs stay as written.
    """
    out = dict(message)
    outbox_id = int(mid) if mid.isdigit() else None
    url = signer.unsubscribe_url(outbox_id, channel) if signer and outbox_id is not None else ""

    def unmark(value: Any) -> Any:
        return value.replace(UNSUBSCRIBE_MARK, url) if isinstance(value, str) else value

    for key in ("text", "subject", "html"):
        if key in out:
            out[key] = unmark(out[key])
    if isinstance(out.get("payload"), Mapping):
        out["payload"] = {k: unmark(v) for k, v in out["payload"].items()}
    tracking = signer is not None and outbox_id is not None and track
    if channel == "email":
        if url:
            out["unsubscribe_url"] = url
        if tracking:
            assert signer is not None and outbox_id is not None
            out["text"] = signer.track_text(str(out.get("text", "")), outbox_id)
            if out.get("html"):
                out["html"] = signer.track_html(str(out["html"]), outbox_id)
        if url and url not in str(out.get("text", "")):
            out["text"] = str(out.get("text", "")) + UNSUBSCRIBE_FOOTER.format(url=url)
    elif channel == "telegram" and tracking and out.get("buttons"):
        assert signer is not None and outbox_id is not None
        out["buttons"] = [
            [
                label,
                signer.click_url(outbox_id, target)
                if _is_url(target) and not signer.is_ours(target)
                else target,
            ]
            for label, target in out["buttons"]
        ]
    return out


def _is_url(target: Any) -> bool:
    return str(target).startswith(("http://", "https://"))


def _chat(recipient: str) -> int | str:
    try:
        return int(recipient)
    except ValueError:
        return recipient


def _keyboard(buttons: list[Any]) -> dict[str, Any] | None:
    rows = []
    for label, target in buttons:
        key = "url" if _is_url(target) else "callback_data"
        rows.append([{"text": label, key: target}])
    return {"inline_keyboard": rows} if rows else None


__all__ = ["UNSUBSCRIBE_FOOTER", "ChannelSenders", "SendFn", "prepare"]

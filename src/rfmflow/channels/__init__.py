"""Outbound channels: the sender port and the senders behind it, and inbound bot updates.

- :mod:`rfmflow.channels.outbound`: the :class:`~rfmflow.channels.outbound.Sender` port,
  :class:`~rfmflow.channels.outbound.OutboundMessage` and
  :class:`~rfmflow.channels.outbound.SendOutcome`.
- :mod:`rfmflow.channels.telegram_sender`: the Telegram sender over python-telegram-bot,
  paced to Telegram's limits (:mod:`rfmflow.channels.telegram_limits`), its HTTP going through
  aiohttp (:mod:`rfmflow.channels.telegram_transport`).
- :mod:`rfmflow.channels.telegram_updates`: a Telegram update as rfmflow events, profile
  traits and block/unblock signals (pure mapping; the service wires it).

Channels know nothing of the service: the service and the automation engine import them.
"""

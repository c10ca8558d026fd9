"""The bot's words and menus: the welcome, the onboarding choices and a command menu per segment or tag.

Read from ``RFMFLOW_TELEGRAM_MENUS`` (JSON text, or the path of a ``.json``/``.yaml`` file)::

    {
      "welcome": "Welcome! What brings you here?",
      "welcome_back": "Welcome back!",
      "stopped": "You will get no more messages from us. Send /start to subscribe again.",
      "onboarding": [{"text": "Offers", "data": "offers"}, {"text": "News", "data": "news"}],
      "onboarding_thanks": "Thanks! Send /menu to see what we have for you.",
      "menus": [
        {"name": "vip", "segments": ["Champions"], "tags": ["vip"],
         "commands": [{"command": "vip", "description": "VIP Zone", "reply": "..."}]},
        {"name": "regular", "commands": [{"command": "events", "description": "Latest events"}]}
      ]
    }

Every key is optional (the defaults are :data:`DEFAULT_CONFIG`). A customer gets the first
menu whose ``segments`` holds their segment or whose ``tags`` meets one of their tags; a menu
with neither is the fallback and must come last. ``/menu`` and ``/stop`` are added to every
menu. An invalid configuration is a :class:`~rfmflow.service.settings.SettingsError` naming the
variable and the place (``menus[0].commands[1].command: ...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rfmflow.service.settings import SettingsError

VARIABLE = "RFMFLOW_TELEGRAM_MENUS"
ONBOARDING_PREFIX = "onb:"
"""Callback data of the onboarding buttons: ``onb:<choice>``."""
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")

DEFAULT_CONFIG: dict[str, Any] = {
    "welcome": "Welcome! What brings you here?",
    "welcome_back": "Welcome back! Send /menu to see what we have for you.",
    "stopped": "You will get no more messages from us. Send /start to subscribe again.",
    "onboarding": [
        {"text": "Offers and discounts", "data": "offers"},
        {"text": "News and events", "data": "news"},
        {"text": "Just looking", "data": "browsing"},
    ],
    "onboarding_thanks": "Thanks! Send /menu to see what we have for you.",
    "menus": [
        {
            "name": "vip",
            "segments": ["Champions"],
            "tags": ["vip"],
            "commands": [
                {"command": "vip", "description": "VIP Zone", "reply": "Welcome to the VIP Zone."},
                {"command": "offers", "description": "Latest offers", "reply": "Here are our latest offers."},
            ],
        },
        {
            "name": "regular",
            "commands": [
                {"command": "events", "description": "Latest events", "reply": "Here are our latest events."},
                {"command": "offers", "description": "Latest offers", "reply": "Here are our latest offers."},
            ],
        },
    ],
}

_BUILT_IN = (
    {"command": "menu", "description": "Show the menu"},
    {"command": "stop", "description": "Stop receiving messages"},
)


@dataclass(frozen=True)
class Command:
    command: str
    description: str
    reply: str | None = None


@dataclass(frozen=True)
class Menu:
    name: str
    segments: frozenset[str]
    tags: frozenset[str]
    commands: tuple[Command, ...]

    def matches(self, segment: str | None, tags: Iterable[str]) -> bool:
        if not self.segments and not self.tags:
            return True
        return (segment is not None and segment in self.segments) or bool(self.tags.intersection(tags))

    def bot_commands(self) -> list[dict[str, str]]:
        """The ``BotCommand`` list for ``setMyCommands``."""
        return [{"command": c.command, "description": c.description} for c in self.commands]

    def reply_keyboard(self) -> dict[str, Any]:
        """A reply keyboard of the menu's commands, two per row (Bot API JSON)."""
        buttons = [{"text": f"/{c.command}"} for c in self.commands]
        rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
        return {"keyboard": rows, "resize_keyboard": True}


@dataclass(frozen=True)
class Choice:
    text: str
    data: str


@dataclass(frozen=True)
class BotConfig:
    welcome: str
    welcome_back: str
    stopped: str
    onboarding: tuple[Choice, ...]
    onboarding_thanks: str
    menus: tuple[Menu, ...]

    def menu_for(self, segment: str | None, tags: Iterable[str]) -> Menu:
        held = set(tags)
        for menu in self.menus:
            if menu.matches(segment, held):
                return menu
        return self.menus[-1]

    def command(self, menu: Menu, name: str) -> Command | None:
        return next((c for c in menu.commands if c.command == name), None)

    def onboarding_keyboard(self) -> dict[str, Any]:
        """An inline keyboard, one choice per row."""
        return {
            "inline_keyboard": [
                [{"text": c.text, "callback_data": ONBOARDING_PREFIX + c.data}] for c in self.onboarding
            ]
        }


def _error(where: str, reason: str) -> SettingsError:
    return SettingsError(f"{VARIABLE}: {where}: {reason}")


def _text(data: Mapping[str, Any], key: str, where: str, *, limit: int = 4096) -> str:
    value = data.get(key, DEFAULT_CONFIG.get(key))
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise _error(where + key, f"expected a text of 1 to {limit} characters")
    return value


def _names(raw: Any, where: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise _error(where, "expected a list of names")
    return frozenset(raw)


def _commands(raw: Any, where: str) -> tuple[Command, ...]:
    if not isinstance(raw, list) or not raw:
        raise _error(where, "expected a non-empty list of commands")
    out: list[Command] = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _error(here, "expected an object with command and description")
        name = item.get("command")
        if not isinstance(name, str) or not _COMMAND.fullmatch(name.lstrip("/")):
            raise _error(here + ".command", "expected 1 to 32 characters of a-z 0-9 _")
        description = item.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 256:
            raise _error(here + ".description", "expected a text of 1 to 256 characters")
        reply = item.get("reply")
        if reply is not None and (not isinstance(reply, str) or not reply.strip()):
            raise _error(here + ".reply", "expected a text")
        out.append(Command(name.lstrip("/"), description, reply))
    names = [c.command for c in out]
    for built_in in _BUILT_IN:
        if built_in["command"] not in names:
            out.append(Command(built_in["command"], built_in["description"]))
    if len(out) > 100:
        raise _error(where, "Telegram allows at most 100 commands")
    return tuple(out)


def config_from_data(data: Any) -> BotConfig:
    """Check a parsed configuration (defaults for what it leaves out)."""
    if not isinstance(data, dict):
        raise _error("(top)", "expected an object")
    unknown = set(data) - set(DEFAULT_CONFIG)
    if unknown:
        raise _error(sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(DEFAULT_CONFIG))})")
    raw_choices = data.get("onboarding", DEFAULT_CONFIG["onboarding"])
    if not isinstance(raw_choices, list) or not 1 <= len(raw_choices) <= 10:
        raise _error("onboarding", "expected a list of 1 to 10 choices")
    choices = []
    for i, item in enumerate(raw_choices):
        if not isinstance(item, dict):
            raise _error(f"onboarding[{i}]", "expected an object with text and data")
        text = _text(item, "text", f"onboarding[{i}].", limit=64)
        value = item.get("data")
        if not isinstance(value, str) or not value or len((ONBOARDING_PREFIX + value).encode()) > 64:
            raise _error(f"onboarding[{i}].data", "expected 1 to 60 bytes (Telegram's callback data limit)")
        choices.append(Choice(text, value))
    raw_menus = data.get("menus", DEFAULT_CONFIG["menus"])
    if not isinstance(raw_menus, list) or not raw_menus:
        raise _error("menus", "expected a non-empty list of menus")
    menus = []
    for i, item in enumerate(raw_menus):
        if not isinstance(item, dict):
            raise _error(f"menus[{i}]", "expected an object")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise _error(f"menus[{i}].name", "expected a name of 1 to 64 characters")
        menus.append(
            Menu(
                name,
                _names(item.get("segments"), f"menus[{i}].segments"),
                _names(item.get("tags"), f"menus[{i}].tags"),
                _commands(item.get("commands"), f"menus[{i}].commands"),
            )
        )
    if len({m.name for m in menus}) != len(menus):
        raise _error("menus", "menu names must be unique")
    for i, menu in enumerate(menus[:-1]):
        if not menu.segments and not menu.tags:
            raise _error(f"menus[{i}]", "a menu without segments or tags matches everyone; put it last")
    if menus[-1].segments or menus[-1].tags:
        raise _error(f"menus[{len(menus) - 1}]", "the last menu is the fallback: give it no segments or tags")
    return BotConfig(
        welcome=_text(data, "welcome", ""),
        welcome_back=_text(data, "welcome_back", ""),
        stopped=_text(data, "stopped", ""),
        onboarding=tuple(choices),
        onboarding_thanks=_text(data, "onboarding_thanks", ""),
        menus=tuple(menus),
    )


def load_config(value: str) -> BotConfig:
    """The configuration from the setting's value: empty = defaults; ``{...}`` = JSON; else a path."""
    text = value.strip()
    if not text:
        return config_from_data({})
    if text.startswith("{"):
        try:
            return config_from_data(json.loads(text))
        except json.JSONDecodeError as err:
            raise _error(
                "(JSON)", f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
            ) from None
    path = Path(text)
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as err:
        raise _error(str(path), f"cannot read the file ({err.strerror})") from None
    try:
        data = yaml.safe_load(content) if path.suffix in (".yaml", ".yml") else json.loads(content)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise _error(str(path), f"not valid {path.suffix.lstrip('.') or 'JSON'}: {err}") from None
    return config_from_data(data if data is not None else {})


__all__ = ["DEFAULT_CONFIG", "ONBOARDING_PREFIX", "BotConfig", "Choice", "Command", "Menu", "load_config"]

"""The fake Bot API in its own process, for benchmarks: the sender under test keeps a core.

``python -m rfmflow.fake_telegram --global-per-second 30`` serves until interrupted and prints
``url=http://127.0.0.1:<port>`` once it listens. :class:`FakeTelegramProcess` starts that
command, waits for the line and drives the fake through its control API (``/_fake/...``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from types import TracebackType
from typing import Any

import httpx

from rfmflow.fake_telegram.flood import FakeLimits
from rfmflow.fake_telegram.server import DEFAULT_TOKEN, FakeTelegram


def _limit(text: str) -> float | None:
    return None if text.lower() in ("none", "off", "0") else float(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rfmflow.fake_telegram", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--global-per-second", type=_limit, default=30.0, help="'off' for no limit")
    parser.add_argument("--global-burst", type=_limit, default=None)
    parser.add_argument("--paid-per-second", type=_limit, default=1000.0)
    parser.add_argument("--chat-interval", type=_limit, default=1.0)
    parser.add_argument(
        "--strict-chats", action="store_true", help="answer 'chat not found' for unknown chats"
    )
    args = parser.parse_args(argv)
    limits = FakeLimits(
        global_per_second=args.global_per_second,
        global_burst=args.global_burst,
        paid_per_second=args.paid_per_second,
        chat_interval=args.chat_interval,
    )
    fake = FakeTelegram(token=args.token, limits=limits, strict_chats=args.strict_chats, port=args.port)
    print(f"url={fake.start()}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


class FakeTelegramProcess:
    """``python -m rfmflow.fake_telegram`` as a child process, driven over its control API."""

    def __init__(self, *extra_args: str, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self._args = [sys.executable, "-m", "rfmflow.fake_telegram", "--token", token, *extra_args]
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> str:
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self._proc.stdout.readline()
        if not line.startswith("url=") or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"the fake Telegram process did not start (said {line!r})")
        self.url = line.strip().removeprefix("url=")
        return self.url

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    def __enter__(self) -> FakeTelegramProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the fake Telegram process is not running")
        return self._proc.pid

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.url}/_fake/{path}", timeout=60.0, **kwargs)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return dict(self._control("GET", "stats"))

    def reset(self) -> None:
        self._control("POST", "reset")

    def set_limits(self, limits: FakeLimits) -> None:
        self._control("PUT", "limits", json=limits.as_dict())

    def block(self, chat_ids: list[int | str]) -> None:
        self._control("POST", "block", json={"chat_ids": chat_ids})

    def messages(self) -> list[dict[str, Any]]:
        return list(self._control("GET", "messages"))

"""python-telegram-bot's HTTP transport over aiohttp, and how to tell a send that never left.

python-telegram-bot does the Bot API (parameters, answers, errors); its ``BaseRequest`` is the
pluggable piece that moves bytes. Its default, ``HTTPXRequest``, costs about 0.9 ms of CPU per
request on this project's 2-core machines (httpcore's pool and anyio's cancel scopes), which
caps a broadcast well below Telegram's 1,000 msg/s for paid broadcasts; the same requests
through aiohttp cost about 0.25 ms. :class:`AiohttpRequest` is that transport: form-encoded
parameters (multipart when files are uploaded), keep-alive connections (``TCP_NODELAY``, as
aiohttp sets by default), python-telegram-bot's timeouts.

Errors follow python-telegram-bot's conventions (``TimedOut``, ``NetworkError``), with one
addition the sender needs: :class:`RequestNotSent` when the request certainly did not reach
the server (the connection could not be made, no pooled connection came free in time), so a
retry cannot deliver a message twice. :func:`certainly_not_sent` answers that question for
both transports.
"""

from __future__ import annotations

import aiohttp
import httpx
from telegram.error import NetworkError, TelegramError, TimedOut
from telegram.request import BaseRequest, RequestData

#: httpx errors after which the request certainly did not reach the server.
_HTTPX_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class RequestNotSent(NetworkError):
    """The request never reached the server (connection refused, connect or pool timeout)."""


def certainly_not_sent(err: TelegramError) -> bool:
    """Whether a transport error means the request never left (so resending is safe)."""
    return isinstance(err, RequestNotSent) or isinstance(err.__cause__, _HTTPX_NOT_SENT)


class AiohttpRequest(BaseRequest):
    """A ``telegram.request.BaseRequest`` over one ``aiohttp.ClientSession``.

    ``connections`` caps the open connections; ``timeout`` is the default for connecting
    (waiting for a free pooled connection included) and for reading the answer.
    """

    def __init__(self, *, connections: int = 4, timeout: float = 10.0) -> None:
        self._connections = connections
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.USER_AGENT}
            )

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _seconds(self, value: object) -> float | None:
        """A timeout python-telegram-bot passed: a number, ``None`` (no limit) or "not given"."""
        if value is None:
            return None
        if isinstance(value, int | float):
            return float(value)
        return self._timeout  # python-telegram-bot's DEFAULT_NONE: use ours

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("AiohttpRequest is not initialized: call initialize() (or Bot.initialize())")
        connect = self._seconds(connect_timeout)
        pool = self._seconds(pool_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=self._seconds(read_timeout),
        )
        data: aiohttp.FormData | dict[str, str] | None = None
        if request_data is not None:
            data = _form(request_data) if request_data.contains_files else request_data.json_parameters
        try:
            async with self._session.request(method, url, data=data, timeout=timeout) as response:
                return response.status, await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as err:
            raise RequestNotSent(f"aiohttp.{type(err).__name__}: {err}") from err
        except (TimeoutError, aiohttp.ServerTimeoutError) as err:
            raise TimedOut from err
        except aiohttp.ClientError as err:
            raise NetworkError(f"aiohttp.{type(err).__name__}: {err}") from err


def _form(request_data: RequestData) -> aiohttp.FormData:
    """A multipart body: the JSON-encoded parameters plus the files to upload."""
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form

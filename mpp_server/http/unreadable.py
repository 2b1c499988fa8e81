"""Requests aiohttp's HTTP parser refuses before any app or middleware sees them: a
request line over MAX_REQUEST_LINE_BYTES (414), a header over MAX_HEADER_FIELD_BYTES or
more than MAX_HEADERS headers (431), anything else it cannot read (400).

aiohttp answers those itself, in plain text, and logs them at ERROR with a traceback: its
parser raises LineTooLong or BadHttpMessage in `RequestHandler.data_received`, and
`RequestHandler.handle_error` answers. So every listener is served by ListenerHandler
(`serve`), which answers them in the listener's own protocol (the wallet API's
`{"error": {code, message}}`, Kaspi's `{"result": {resultCode, resultMessage}}`), logs
one warning line (no URL or header text: it may hold a customer id), counts them in
mpp_http_requests_total (route "unreadable") and closes the connection as aiohttp
does. Every other error it leaves to aiohttp.

A body over MAX_BODY_BYTES is not the parser's: `request.read()` raises 413 inside the
app, where the listener's middleware answers it in the same form.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from mpp_server.metrics import HTTP_REQUESTS

log = logging.getLogger(__name__)

# aiohttp's LineTooLong does not say which line was too long, only the limit it hit
# (its second argument), so the two limits must differ: 4 KiB is 40 times our longest
# URL; 8190 is aiohttp's default for a header.
MAX_REQUEST_LINE_BYTES = 4096
MAX_HEADER_FIELD_BYTES = 8190
MAX_HEADERS = 128
# (status, wallet-style code, message) -> the listener's answer
Answer = Callable[[int, str, str], web.Response]


def refusal(exc: HttpProcessingError) -> tuple[int, str, str]:
    """The status, code and message for a request the parser refused."""
    if isinstance(exc, LineTooLong) and exc.args[1:2] == (MAX_REQUEST_LINE_BYTES,):
        return 414, "URI_TOO_LONG", (f"the request line is longer than "
                                     f"{MAX_REQUEST_LINE_BYTES} bytes")
    if isinstance(exc, LineTooLong) or "Too many headers" in exc.message:
        return 431, "HEADERS_TOO_LARGE", (f"a header is longer than {MAX_HEADER_FIELD_BYTES} "
                                          f"bytes, or there are more than {MAX_HEADERS}")
    return 400, "VALIDATION_ERROR", "the request is not valid HTTP/1.1"


class ListenerHandler(web.RequestHandler):
    """aiohttp's connection handler, answering unreadable requests as the listener's
    protocol does."""

    __slots__ = ("_answer", "_listener")

    def __init__(self, manager: web.Server, *, answer: Answer, listener: str,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._answer = answer
        self._listener = listener

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        status, code, why = refusal(exc)
        log.warning("refused a request the HTTP parser could not read",
                    extra={"listener": self._listener, "status": status,
                           "source_ip": request.remote, "error": type(exc).__name__})
        HTTP_REQUESTS.labels(self._listener, "-", "unreadable", str(status)).inc()
        response = self._answer(status, code, why)
        response.force_close()
        return response


async def serve(runner: web.AppRunner, sock: socket.socket, listener: str,
                answer: Answer) -> asyncio.Server:
    """Serve the set-up runner's app on `sock`, as web.SockSite would but with
    ListenerHandler. The caller closes the server before `runner.cleanup()`."""
    loop = asyncio.get_running_loop()
    manager = runner.server
    assert manager is not None, "runner.setup() first"

    def connection() -> ListenerHandler:
        return ListenerHandler(manager, loop=loop, answer=answer, listener=listener,
                               access_log=None, max_line_size=MAX_REQUEST_LINE_BYTES,
                               max_field_size=MAX_HEADER_FIELD_BYTES,
                               max_headers=MAX_HEADERS)

    return await loop.create_server(connection, sock=sock)

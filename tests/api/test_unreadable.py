"""Issue 29: requests too long for the HTTP parser (request line, headers) or for
MAX_BODY_BYTES get the listener's own error form with 414/431/413, logged as one warning;
before, aiohttp answered a plain-text 400 and logged it at ERROR with a traceback."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import pytest

from mpp_server.http.unreadable import MAX_HEADER_FIELD_BYTES, MAX_HEADERS, MAX_REQUEST_LINE_BYTES
from tests.support.helpers import call
from tests.support.stack import Stack

LONG_QUERY = "/v1/events?after=" + "1" * 10_000
LONG_HEADER = {"X-Filler": "a" * (MAX_HEADER_FIELD_BYTES + 1)}
MANY_HEADERS = {f"X-Filler-{i}": "a" for i in range(MAX_HEADERS + 1)}


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "mpp_server.http.unreadable"]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def raw_exchange(url: str, request: bytes) -> tuple[int, bytes]:
    """Send bytes no HTTP client would; the status and the body of the answer."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)  # the server closes
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(("path", "headers", "status", "code"), [
    (LONG_QUERY, {}, 414, "URI_TOO_LONG"),
    ("/v1/events", LONG_HEADER, 431, "HEADERS_TOO_LARGE"),
    ("/v1/events", MANY_HEADERS, 431, "HEADERS_TOO_LARGE"),
], ids=["request line", "one header", "too many headers"])
async def test_wallet_answers_an_over_long_request_in_its_json_form(
        stack: Stack, caplog: pytest.LogCaptureFixture, path: str, headers: dict[str, str],
        status: int, code: str) -> None:
    caplog.set_level(logging.INFO)
    answered, body = await call(stack, "GET", path, headers=headers)
    assert answered == status and body["error"]["code"] == code, body
    assert [r.levelno for r in refusals(caplog)] == [logging.WARNING]
    assert errors_logged(caplog) == []
    # The listener serves on.
    assert (await call(stack, "GET", "/v1/events?limit=1"))[0] == 200


async def test_wallet_refuses_a_request_line_just_over_the_limit(stack: Stack) -> None:
    at_limit = "/v1/events?limit=1&x=" + "1" * (MAX_REQUEST_LINE_BYTES - 21)
    assert len(at_limit) == MAX_REQUEST_LINE_BYTES
    status, body = await call(stack, "GET", at_limit)
    assert status == 422 and "unknown query parameters" in body["error"]["message"], body
    status, body = await call(stack, "GET", at_limit + "1")
    assert status == 414 and body["error"]["code"] == "URI_TOO_LONG", body


async def test_wallet_answers_an_over_long_body_in_its_json_form(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    status, body = await call(stack, "POST", "/v1/scan", raw=b'{"qrCode": "' + b"a" * 70_000
                              + b'", "customerId": "770000000001"}')
    assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE", body
    assert errors_logged(caplog) == []


async def test_wallet_answers_garbage_in_its_json_form(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    status, body = await raw_exchange(stack.wallet_url, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and b'"code":"VALIDATION_ERROR"' in body.replace(b" ", b""), body
    assert errors_logged(caplog) == []


@pytest.mark.parametrize(("query", "headers", "status"), [
    ("?x=" + "1" * 10_000, {}, 414),
    ("", LONG_HEADER, 431),
], ids=["request line", "one header"])
async def test_kaspi_facing_listener_answers_in_kaspis_form(
        stack: Stack, caplog: pytest.LogCaptureFixture, query: str, headers: dict[str, str],
        status: int) -> None:
    caplog.set_level(logging.INFO)
    async with stack.http.post(stack.kaspi_url + "/refund" + query, json={},
                               headers=headers) as resp:
        answer = await resp.json()
        assert resp.status == status, answer
    assert answer["result"]["resultCode"] == "PARAM_ILLEGAL", answer
    assert [r.levelno for r in refusals(caplog)] == [logging.WARNING]
    assert errors_logged(caplog) == []

"""Inputs the schemathesis run (tests/api/test_fuzz.py) found mishandled, kept as plain
requests so each stays fixed even if the fuzzer's generation changes."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from tests.support.helpers import call, new_customer, new_qr, scan
from tests.support.stack import Stack


async def refund_raw(stack: Stack, raw: bytes) -> tuple[int, Any]:
    async with stack.http.post(stack.kaspi_url + "/refund", data=raw,
                               headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json(content_type=None)


def refund_body(**field: str) -> bytes:
    """A /refund body written as JSON text, so escapes like \\u0000 reach the server."""
    fields = {"customerId": '"770000000009"', "paymentId": '"fz-pay-1"',
              "refundAmount": '"1.00"', "refundId": '"fz-ref-1"', "linkReceipt": '"l"', **field}
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()


# Was 500 UNKNOWN_EXCEPTION: PostgreSQL text refuses NUL and lone surrogates, so the
# refunds INSERT failed, and Kaspi would have retried the unreadable request for ever.
@pytest.mark.parametrize("field", ["customerId", "paymentId", "refundId", "linkReceipt"])
@pytest.mark.parametrize("text", ['"a\\u0000b"', '"a\\ud800b"', '"\\udc00"'])
async def test_refund_with_unstorable_text_is_param_illegal(stack: Stack, field: str,
                                                            text: str) -> None:
    status, body = await refund_raw(stack, refund_body(**{field: text}))
    assert status == 400, body
    assert body["result"]["resultCode"] == "PARAM_ILLEGAL"
    assert body["result"]["resultMessage"].startswith(field)
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM refunds WHERE refund_id LIKE 'a%b'"
                                   " OR payment_id LIKE 'a%b'") == 0


async def test_refund_with_a_valid_astral_character_is_not_refused_for_it(stack: Stack) -> None:
    status, body = await refund_raw(stack, refund_body(linkReceipt='"\\ud83d\\ude00"'))
    assert status == 200, body  # an unknown payment: a business answer, not a parse error
    assert body["result"]["resultCode"] == "PARAM_ILLEGAL"


# Was: the exchange went unrecorded ("could not store the inbound request log"), though
# every callback must be kept.
async def test_refund_body_with_a_nul_byte_is_answered_and_kept(stack: Stack) -> None:
    marker = b"fuzz-nul-" + new_customer().encode()
    status, body = await refund_raw(stack, b"\x00" + marker)
    assert status == 400 and body["result"]["resultCode"] == "PARAM_ILLEGAL"
    async with stack.pool.acquire() as conn:
        kept = await conn.fetchval(
            "SELECT body_masked FROM inbound_requests WHERE body_masked LIKE '%' || $1",
            marker.decode())
    assert kept == "\ufffd" + marker.decode()


# Was 500 INTERNAL_ERROR: the event id overflowed bigint on its way to the database.
@pytest.mark.parametrize("after", ["1-99999999999999999999", "99999999999999999999-1",
                                   "18446744073709551616-0", "0-9223372036854775808"])
async def test_events_cursor_out_of_range_is_a_validation_error(stack: Stack, after: str) -> None:
    status, body = await call(stack, "GET", f"/v1/events?after={after}")
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", body


# Was 200 with no events: the largest cursor is beyond the end of the feed (issue 29).
async def test_events_largest_cursor_is_beyond_the_end(stack: Stack) -> None:
    status, body = await call(stack, "GET",
                              "/v1/events?after=18446744073709551615-9223372036854775807")
    assert status == 422 and "beyond the end" in body["error"]["message"], body


# Was 200: a misspelt `after` silently restarted the feed from the first event.
@pytest.mark.parametrize("query", ["afer=5-5", "=false", "after=0-0&%23=1"])
async def test_events_unknown_query_parameter_is_refused(stack: Stack, query: str) -> None:
    status, body = await call(stack, "GET", f"/v1/events?{query}")
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", body


# Was 200: int() reads " +5 " and "1_0" as numbers.
@pytest.mark.parametrize("limit", ["%20%2B5%20", "1_0", "%C2%B2", "-1", ""])
async def test_events_limit_is_plain_digits(stack: Stack, limit: str) -> None:
    status, body = await call(stack, "GET", f"/v1/events?limit={limit}")
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", body


async def test_events_empty_after_reads_from_the_start(stack: Stack) -> None:
    assert (await call(stack, "GET", "/v1/events?after=&limit=1"))[0] == 200


# The same class as /refund's: a checkout value is stored (jsonb) once Kaspi accepted it.
async def test_checkout_value_with_nul_is_refused_before_kaspi(stack: Stack) -> None:
    customer = new_customer()
    qr = await new_qr(stack, "Custom")
    scanned = await scan(stack, qr["qrCode"], customer)
    payment_id = scanned["payment"]["paymentId"]
    params = scanned["service"]["parameters"]
    values = [{"id": p["id"], "value": (p["options"][0]["key"] if p.get("options")
                                        else "A\u0000B")}
              for p in params if not p.get("value")]
    status, body = await call(stack, "POST", f"/v1/payments/{payment_id}/checkout",
                              {"customerId": customer, "parameters": values})
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", body
    status, body = await call(stack, "GET", f"/v1/payments/{payment_id}")
    assert status == 200 and body["status"] == "SCANNED"


# ---- issue 14, item 5: wallet inputs that answered 500 ---------------------------------

async def raw_http(url: str, request: bytes) -> tuple[int, Any]:
    """Send `request` as bytes (headers aiohttp's client would not send) and read the
    answer: the status and the JSON body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(head.split()[1]), json.loads(body)


async def test_deposit_amount_of_5000_digits_is_a_validation_error(stack: Stack) -> None:
    customer = new_customer()
    raw = b'{"depositId": "d5000-' + customer.encode() + b'", "amount": ' + b"1" * 5000 + b"}"
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits", raw=raw,
                              token=stack.deposit_token)
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", body
    status, _ = await call(stack, "GET", f"/v1/accounts/{customer}")
    assert status == 404  # nothing written


async def test_confirm_amount_of_5000_digits_is_a_validation_error(stack: Stack) -> None:
    raw = b'{"customerId": "770000000001", "amount": ' + b"9" * 5000 + b"}"
    status, body = await call(stack, "POST", "/v1/payments/no-such-payment/confirm", raw=raw)
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", body


async def test_json_nested_30000_deep_is_a_validation_error(stack: Stack) -> None:
    raw = b"[" * 30_000 + b"]" * 30_000
    assert len(raw) < 64 * 1024  # under the body limit: the parser must refuse it
    status, body = await call(stack, "POST", "/v1/scan", raw=raw)
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", body


async def test_bearer_token_that_is_not_utf8_is_unauthorized(stack: Stack) -> None:
    host = stack.wallet_url.removeprefix("http://")
    request = (b"GET /v1/events HTTP/1.1\r\nHost: " + host.encode() +
               b"\r\nAuthorization: Bearer \xff\xfe" + stack.token.encode() +
               b"\r\nConnection: close\r\n\r\n")
    status, body = await raw_http(stack.wallet_url, request)
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED", body

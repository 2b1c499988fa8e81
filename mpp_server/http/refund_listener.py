"""The Kaspi-facing listener: `POST /refund` (regulation §4.4), called over the tunnel.

Answers are always `{"result": {resultCode, resultMessage}}`: HTTP 200 for every
business outcome, 400 with PARAM_ILLEGAL for a request we cannot read, 403 for a
source outside KASPI_ALLOWED_NETWORKS (checked before the body is read, nothing
written), 500 with UNKNOWN_EXCEPTION when we failed (Kaspi retries then).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from mpp_server import db, jsonutil
from mpp_server.domain import refunds
from mpp_server.http.middleware import SERVICES, describe_validation
from mpp_server.http.models import Amount, StoredText
from mpp_server.http.routing import Handler, route_name
from mpp_server.journal import Direction, Exchange, Refs, Started, new_request_id
from mpp_server.kaspi_client.codes import ResultCode
from mpp_server.kaspi_client.models import ResultOut
from mpp_server.logs import mask_customer_ids_in_json
from mpp_server.metrics import DB_UNAVAILABLE

log = logging.getLogger(__name__)

RAW_BODY: web.RequestKey[bytes] = web.RequestKey("raw_body", bytes)
STARTED: web.RequestKey[Started] = web.RequestKey("started", Started)
# Set when the handler stored the exchange itself (with the refund, one statement).
LOGGED: web.RequestKey[bool] = web.RequestKey("logged", bool)
# For the exchange journal: the ids the exchange concerns, once read.
REFS: web.RequestKey[Refs] = web.RequestKey("refs", Refs)
COUNTERPARTY = "kaspi"
_LOGGED_HEADERS = ("Content-Type", "Content-Length", "X-Request-ID", "X-Caller-Name",
                   "X-Locale", "User-Agent")


class RefundIn(BaseModel):
    """Kaspi's refund request. Fields we do not model are ignored, as real Kaspi may add
    some; keys are matched after trimming spaces (the regulation's example sends
    `"paymentId "` and `"refundId "`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    customerId: Annotated[StoredText, StringConstraints(min_length=1, max_length=12)]
    paymentId: Annotated[StoredText, StringConstraints(min_length=1, max_length=64)]
    refundAmount: Amount
    refundId: Annotated[StoredText, StringConstraints(min_length=1, max_length=64)]
    # The receipt plays no part in the money: a refund without one is credited (and
    # counted as Kaspi's defect, domain/refunds.py), never refused for it.
    linkReceipt: Annotated[StoredText, StringConstraints(max_length=2048)] | None = None


class RefundResultOut(BaseModel):
    """Every answer of `/refund`, whatever the HTTP status."""

    result: ResultOut


def result_response(code: str, message: str, status: int = 200) -> web.Response:
    body = RefundResultOut(result=ResultOut(resultCode=code, resultMessage=message))
    return web.Response(text=body.model_dump_json(), status=status,
                        content_type="application/json")


def unreadable_answer(status: int, code: str, message: str) -> web.Response:
    """A request the HTTP parser refused (http/unreadable.py), in Kaspi's form: the
    status says what was too long, PARAM_ILLEGAL as for any request we cannot read."""
    return result_response(ResultCode.PARAM_ILLEGAL, message, status)


def _normalize_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Trim keys; the same key given twice (with and without a space) must agree."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.strip()
        if name in out and out[name] != value:
            raise ValueError(f"{name} is given twice with different values")
        out[name] = value
    return out


def parse_refund(raw: bytes) -> RefundIn:
    # A key given twice with different values ("refundAmount": 1, "refundAmount": 9)
    # is refused, not read as the last one.
    data = jsonutil.loads(raw, unique_keys=True)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return RefundIn.model_validate(_normalize_keys(data))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation(exc, limit=1)
    return str(exc)[:200]


async def refund(request: web.Request) -> web.Response:
    raw = await request.read()
    request[RAW_BODY] = raw
    try:
        body = parse_refund(raw)
    except (ValueError, ValidationError) as exc:
        return result_response(ResultCode.PARAM_ILLEGAL, _describe(exc), status=400)
    request[REFS] = Refs(payment_id=body.paymentId, refund_id=body.refundId)
    answer = await refunds.apply_refund(request.app[SERVICES].pool, refunds.RefundRequest(
        refund_id=body.refundId, payment_id=body.paymentId, customer_id=body.customerId,
        amount_tiyn=body.refundAmount, link_receipt=body.linkReceipt or None),
        _exchange(request),
        request.app[SERVICES].settings.limits)
    request[LOGGED] = True
    return result_response(answer.code, answer.message)


@web.middleware
async def source_allowlist(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only Kaspi's networks may call us; decided before the body is read."""
    try:
        source = ipaddress.ip_address(request.remote or "")
    except ValueError:
        source = None
    if isinstance(source, ipaddress.IPv6Address) and source.ipv4_mapped is not None:
        # A dual-stack listener sees an IPv4 peer as ::ffff:a.b.c.d; the allow-list
        # names it as IPv4.
        source = source.ipv4_mapped
    allowed = request.app[SERVICES].settings.allowed_networks
    if source is None or not any(source in net for net in allowed):
        log.warning("refused a request from outside KASPI_ALLOWED_NETWORKS",
                    extra={"source_ip": request.remote, "path": request.path})
        return result_response(ResultCode.PARAM_ILLEGAL, "source address not allowed", 403)
    return await handler(request)


@web.middleware
async def inbound_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer in the protocol's form whatever happens, and keep every exchange."""
    request[STARTED] = Started()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = result_response(ResultCode.PARAM_ILLEGAL, exc.reason, exc.status)
    except Exception as exc:
        if db.is_unavailable(exc):
            # Nowhere to keep the exchange either; Kaspi retries on UNKNOWN_EXCEPTION.
            DB_UNAVAILABLE.labels("kaspi").inc()
            log.warning("refund: database unavailable",
                        extra={"error": f"{type(exc).__name__}: {exc}"})
            request[LOGGED] = True
        else:
            log.exception("refund failed", extra={"route": route_name(request)})
        response = result_response(ResultCode.UNKNOWN_EXCEPTION,
                                   "internal error; please retry", 500)
    if not request.get(LOGGED, False):
        await _store_exchange(request, response)
    _journal(request, response)
    return response


def _journal(request: web.Request, response: web.StreamResponse) -> None:
    """The exchange journal's row (unmasked, unlike the inbound request log's: the
    journal keeps customer ids as the protocol carries them)."""
    request.app[SERVICES].journal.record(Exchange(
        Direction.IN, COUNTERPARTY, "refund", request[STARTED],
        request[STARTED].elapsed_ms(), target=f"{request.method} {request.path}",
        refs=request.get(REFS, Refs()),
        request_id=request.headers.get("X-Request-ID") or new_request_id(),
        http_status=response.status, request_body=request.get(RAW_BODY),
        response_body=response.text if isinstance(response, web.Response) else None))


def _exchange(request: web.Request) -> refunds.InboundExchange:
    """What the inbound request log keeps of a request (the answer is added by whoever
    stores it)."""
    body = request.get(RAW_BODY, b"")
    return refunds.InboundExchange(
        source_ip=request.remote or "", path=request.path[:256],
        headers={k: request.headers[k][:256] for k in _LOGGED_HEADERS if k in request.headers},
        # PostgreSQL text cannot hold NUL: without this, such an exchange went unrecorded.
        body_masked=mask_customer_ids_in_json(
            body[:65536].decode(errors="replace").replace("\x00", "\ufffd")),
        elapsed_ms=request[STARTED].elapsed_ms())


async def _store_exchange(request: web.Request, response: web.StreamResponse) -> None:
    """The log entry of an exchange the handler did not store (refused, unreadable,
    failed)."""
    exchange = _exchange(request)
    answer = response.text if isinstance(response, web.Response) else None
    try:
        async with request.app[SERVICES].pool.acquire() as conn:
            await conn.execute(
                "SELECT inbound_log_insert($1, $2, $3, $4, $5, $6, $7, $8)",
                exchange.source_ip, request.method, exchange.path, exchange.headers,
                exchange.body_masked, response.status,
                jsonutil.loads(answer) if answer else None, exchange.elapsed_ms)
    except Exception:  # never instead of the protocol's answer
        log.exception("could not store the inbound request log")

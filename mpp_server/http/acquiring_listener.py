"""The acquiring listener (ACQUIRING_LISTEN): card acquirers' callbacks about top-ups,
reachable from the internet in production (unlike the wallet API and the tunnel).

A callback is never trusted: it only names an order, and is answered at once; the
top-up is checked through the acquirer's own status API in the background
(Topups.on_callback). Whatever a callback claims, forged, repeated or late, changes
nothing by itself. Every callback is answered 200, so an acquirer never retries one
and a prober learns nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from mpp_server import jsonutil
from mpp_server.acquirers.base import CallbackClaim, Provider
from mpp_server.http.routing import Handler
from mpp_server.http.topups import TOPUP_SERVICES, TopupServices
from mpp_server.journal import Direction, Exchange, Refs, Started, new_request_id

log = logging.getLogger(__name__)
MAX_CALLBACK_BYTES = 16 * 1024
MAX_ID_CHARS = 128
# Set by a handler: whose callback it was and what it claims (journal_callbacks).
CALLBACK: web.RequestKey[tuple[Provider, CallbackClaim]] = web.RequestKey(
    "callback", tuple)


def _short(value: object) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip()
        return text[:MAX_ID_CHARS] if text else None
    return None


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = jsonutil.loads(raw)
    except jsonutil.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def halyk_claim(raw: bytes) -> CallbackClaim:
    """postLink: `{id (Halyk's invoice id), invoiceId (ours), status, ...}`."""
    body = _json(raw)
    return CallbackClaim(_short(body.get("id")), _short(body.get("invoiceId")),
                         body.get("status") == "CHARGED")


def kapital_claim(params: dict[str, str]) -> CallbackClaim:
    """ApproveURL/DeclineURL/CancelURL with OrderId and SessionId (query or form); our
    own `result` query parameter says which URL it was."""
    lowered = {k.lower(): v for k, v in params.items()}
    return CallbackClaim(_short(lowered.get("orderid")), None,
                         lowered.get("result") == "approve")


def kaspi_claim(raw: bytes) -> CallbackClaim:
    """callbackUrl: `{data: {paymentId, externalId (ours), status}}`."""
    data = _json(raw).get("data")
    if not isinstance(data, dict):
        data = {}
    return CallbackClaim(_short(data.get("paymentId")), _short(data.get("externalId")),
                         data.get("status") == "COMPLETED")


def _accept(request: web.Request, provider: Provider, claim: CallbackClaim) -> None:
    services: TopupServices = request.app[TOPUP_SERVICES]
    request[CALLBACK] = (provider, claim)
    if claim.order_id is None and claim.topup_id is None:
        log.warning("a callback naming no order", extra={"provider": provider.value})
        return
    services.topups.on_callback(provider, claim)


async def halyk_callback(request: web.Request) -> web.Response:
    _accept(request, Provider.HALYK_EPAY, halyk_claim(await request.read()))
    return web.Response(text="OK")


async def kapital_callback(request: web.Request) -> web.Response:
    params = dict(request.query)
    if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    _accept(request, Provider.KAPITAL, kapital_claim(params))
    return web.Response(text="OK")


async def kaspi_callback(request: web.Request) -> web.Response:
    _accept(request, Provider.KASPI_ECOM, kaspi_claim(await request.read()))
    return web.json_response({"status": "OK"})


@web.middleware
async def journal_callbacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every callback is a row of the exchange journal, with the top-up it names."""
    started = Started()
    response = await handler(request)
    if CALLBACK in request:
        provider, claim = request[CALLBACK]
        services: TopupServices = request.app[TOPUP_SERVICES]
        topup_id = claim.topup_id
        try:
            topup_id = await services.topups.topup_of(provider, claim) or topup_id
        except Exception as exc:  # the journal row goes without it
            log.warning("callback: its top-up not looked up",
                        extra={"error": f"{type(exc).__name__}: {exc}"})
        services.journal.record(Exchange(
            Direction.IN, provider.value, "callback", started, started.elapsed_ms(),
            target=f"{request.method} {request.path_qs}", refs=Refs(topup_id=topup_id),
            request_id=request.headers.get("X-Request-ID") or new_request_id(),
            http_status=response.status, request_body=await request.read(),
            response_body=response.text if isinstance(response, web.Response) else None,
            redact=True))
    return response


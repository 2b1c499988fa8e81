"""The acquiring listener (ACQUIRING_LISTEN): what card acquirers and the customer's
browser send us about top-ups, reachable from the internet in production (unlike the
wallet API and the tunnel).

A callback is never trusted: it only names an order, and is answered at once; the
top-up is checked through the acquirer's own status API in the background
(Topups.on_callback: bounded, coalesced per order). Whatever a callback claims, forged,
repeated or late, changes nothing by itself. Halyk's postLink carries the secret_hash we
gave with the invoice's payment token: one without it is counted and dropped before any
database read. Kapital's is the customer's browser coming back with `xmlmsg`. Kaspi's QR
API sends none (it is polled); its path stays, a nudge to check.

Our payment page for Halyk (`/pay/halyk-epay/{pageKey}`) opens Halyk's payment form with
the payment token bound to the invoice, while the top-up is CREATED only.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from mpp_server import jsonutil
from mpp_server.acquirers import kapital
from mpp_server.acquirers.base import CallbackClaim, Provider
from mpp_server.acquirers.halyk_epay import HalykEpay
from mpp_server.domain.outcomes import TopupStatus
from mpp_server.errors import AcquirerUnavailable
from mpp_server.http.routing import Handler
from mpp_server.http.topups import TOPUP_SERVICES, TopupServices
from mpp_server.journal import Direction, Exchange, Refs, Started, new_request_id
from mpp_server.metrics import TOPUP_CALLBACK_DISAGREEMENTS

log = logging.getLogger(__name__)
MAX_CALLBACK_BYTES = 16 * 1024
MAX_ID_CHARS = 128
_HTML_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                 "X-Content-Type-Options": "nosniff"}
# Set by a callback's handler: whose callback it was and what it names, if anything
# (journal_callbacks).
CALLBACK: web.RequestKey[tuple[Provider, CallbackClaim | None]] = web.RequestKey(
    "callback", tuple)
RETURN_PAGE = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Top-up</title>"
               "</head><body><p>{message}</p></body></html>")


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


def _services(request: web.Request) -> TopupServices:
    return request.app[TOPUP_SERVICES]


def _halyk(request: web.Request) -> HalykEpay:
    client = _services(request).acquirers[Provider.HALYK_EPAY]
    assert isinstance(client, HalykEpay)
    return client


def _accept(request: web.Request, provider: Provider, claim: CallbackClaim | None,
            claims_paid: bool) -> None:
    request[CALLBACK] = (provider, claim)
    if claim is None or (claim.order_id is None and claim.topup_id is None):
        log.warning("a callback naming no order of ours, or forged",
                    extra={"provider": provider.value})
        if claims_paid:
            TOPUP_CALLBACK_DISAGREEMENTS.labels(provider.value).inc()
        return
    _services(request).topups.on_callback(provider, claim)


def _page(message: str, status: int = 200) -> web.Response:
    return web.Response(text=RETURN_PAGE.format(message=message), status=status,
                        content_type="text/html", headers=_HTML_HEADERS)


async def halyk_callback(request: web.Request) -> web.Response:
    """postLink / failurePostLink: JSON {code: ok|error, invoiceId, id, amount,
    secret_hash, ...}."""
    body = _json(await request.read())
    _accept(request, Provider.HALYK_EPAY, _halyk(request).callback_claim(body),
            body.get("code") == "ok")
    return web.Response(text="OK")


async def kapital_callback(request: web.Request) -> web.Response:
    """The browser back from Kapital's page, at ApproveURL, DeclineURL or CancelURL, with
    the form field (or query parameter) xmlmsg."""
    xmlmsg = request.query.get("xmlmsg", "")
    if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        posted = (await request.post()).get("xmlmsg")
        xmlmsg = posted if isinstance(posted, str) else xmlmsg
    _accept(request, Provider.KAPITAL, kapital.callback_claim(xmlmsg[:MAX_CALLBACK_BYTES]),
            request.query.get("result") == "approve")
    return _page("Payment received by the bank; return to the app to see your balance.")


async def kaspi_callback(request: web.Request) -> web.Response:
    """Kaspi's QR API calls nobody back; a call here only makes us ask its status."""
    body = _json(await request.read())
    inner = body.get("Data")
    data: dict[str, Any] = inner if isinstance(inner, dict) else body
    claim = CallbackClaim(_short(data.get("PaymentId")), _short(data.get("ExternalId")),
                          data.get("Status") == "Processed")
    _accept(request, Provider.KASPI_ECOM, claim, claim.claims_paid)
    return web.json_response({"StatusCode": 0})


async def halyk_payment_page(request: web.Request) -> web.Response:
    """The page paymentUrl points to: Halyk's payment form for the invoice, while the
    top-up can be paid; afterwards (`?done`, Halyk's backLink) or once it is over, a
    plain page that says so."""
    try:
        row = await _services(request).topups.page(Provider.HALYK_EPAY,
                                                   request.match_info["pageKey"])
    except AcquirerUnavailable:
        return _page("Busy; try again in a moment.", 503)
    if row is None:
        return _page("No such payment.", 404)
    if "done" in request.query:
        return _page("Payment sent; return to the app to see your balance.")
    if row["status"] != TopupStatus.CREATED or row["page_data"] is None:
        return _page(f"This top-up is {row['status'].lower()}: nothing to pay here.")
    back = _services(request).topups.page_url(Provider.HALYK_EPAY, row["page_key"]) + "?done"
    return web.Response(text=_halyk(request).payment_page(row["page_data"], back),
                        content_type="text/html", headers=_HTML_HEADERS)


@web.middleware
async def journal_callbacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every callback is a row of the exchange journal, with the top-up it names (looked
    up by Topups.journal_callback, bounded, after the answer)."""
    started = Started()
    response = await handler(request)
    if CALLBACK in request:
        provider, claim = request[CALLBACK]
        _services(request).topups.journal_callback(provider, claim, Exchange(
            Direction.IN, provider.value, "callback", started, started.elapsed_ms(),
            target=f"{request.method} {request.path_qs}",
            refs=Refs(topup_id=claim.topup_id if claim else None),
            request_id=request.headers.get("X-Request-ID") or new_request_id(),
            http_status=response.status, request_body=await request.read(),
            response_body=response.text if isinstance(response, web.Response) else None,
            redact=True))
    return response

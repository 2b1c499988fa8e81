"""The fake Halyk ePay at /halyk-epay (shared/seeds/halyk-epay-bitrix.txt): client-
credentials tokens that expire, invoices/create with postLink, check-transaction,
refund, the payment page and its postLink callback."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aiohttp import web

from mpp_server import jsonutil
from mpp_server.devtools.simulator.acquirers.state import (
    ACQUIRING,
    TOKEN_TTL_S,
    AcquiringState,
    OrderState,
    Refund,
    SimOrder,
)
from mpp_server.money import AmountError, format_amount, parse_amount

PROVIDER = "halyk-epay"
BASE = "/halyk-epay"
API = BASE + "/api/public/v1"
CLIENT_SECRET = "mpp-test-secret"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = jsonutil.loads(raw)
    except jsonutil.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


async def _authorized(request: web.Request, state: AcquiringState) -> bool:
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ")
    expiry = state.tokens.get(token)
    return expiry is not None and asyncio.get_running_loop().time() < expiry


async def _begin(request: web.Request, operation: str
                 ) -> tuple[AcquiringState, bytes, web.StreamResponse | None]:
    state = request.app[ACQUIRING]
    body = await request.read()
    state.record(PROVIDER, operation, request, body)
    answer = await state.fault(PROVIDER, operation, request)
    if answer is None and operation != "token" and not await _authorized(request, state):
        answer = _error(401, "TOKEN_EXPIRED", "access token expired or unknown")
    return state, body, answer


async def token(request: web.Request) -> web.StreamResponse:
    state, _, answer = await _begin(request, "token")
    if answer is not None:
        return answer
    form = await request.post()
    if form.get("grant_type") != "client_credentials" or form.get(
            "client_secret") != CLIENT_SECRET or not form.get("client_id"):
        return _error(401, "INVALID_CLIENT", "bad client credentials")
    issued = secrets.token_urlsafe(24)
    state.tokens[issued] = asyncio.get_running_loop().time() + TOKEN_TTL_S
    return web.json_response({"access_token": issued, "expires_in": TOKEN_TTL_S,
                              "token_type": "Bearer", "scope": form.get("scope", "")})


async def create_invoice(request: web.Request) -> web.StreamResponse:
    state, body, answer = await _begin(request, "create")
    if answer is not None:
        return answer
    data = _json(body)
    try:
        amount = parse_amount(data.get("amount"))
    except AmountError:
        return _error(400, "INVALID_AMOUNT", "amount must be tenge with two decimals")
    invoice_id, post_link = data.get("invoiceId"), data.get("postLink")
    if (data.get("currency") != "KZT" or not data.get("terminal") or amount <= 0
            or not isinstance(invoice_id, str) or not isinstance(post_link, str)):
        return _error(400, "INVALID_REQUEST", "currency KZT, terminal, invoiceId, postLink")
    existing = state.find_reference(PROVIDER, invoice_id)
    if existing is not None:
        if existing.amount_tiyn != amount:
            return _error(400, "DUPLICATE_INVOICE", "invoiceId used with another amount")
        order = existing
    else:
        order_id = state.next_id()
        base = f"{request.scheme}://{request.host}{BASE}"
        order = SimOrder(PROVIDER, order_id, invoice_id, amount,
                         f"{base}/pay/invoices/{order_id}",
                         {"success": post_link,
                          "decline": str(data.get("failurePostLink") or post_link)})
        state.add(order)
    return web.json_response({"id": order.order_id, "invoiceId": order.reference,
                              "amount": format_amount(order.amount_tiyn), "currency": "KZT",
                              "status": "NEW"})


def transaction(order: SimOrder) -> dict[str, Any]:
    status = {OrderState.NEW: "NEW", OrderState.PAID: "CHARGED",
              OrderState.DECLINED: "DECLINED", OrderState.EXPIRED: "CANCELLED"}[order.state]
    answer: dict[str, Any] = {"id": order.order_id, "invoiceId": order.reference,
                              "status": status, "amount": format_amount(order.charged_tiyn),
                              "currency": order.charged_currency or "KZT",
                              "refundedAmount": format_amount(order.refunded_tiyn)}
    if order.state is OrderState.DECLINED:
        answer["reason"] = "insufficient funds on card"
    return answer


async def check_transaction(request: web.Request) -> web.StreamResponse:
    state, _, answer = await _begin(request, "status")
    if answer is not None:
        return answer
    order = state.find_reference(PROVIDER, request.query.get("invoiceId", ""))
    if order is None:
        return _error(404, "NOT_FOUND", "no such invoice")
    order.status_checks += 1
    return web.json_response(transaction(order))


async def refund(request: web.Request) -> web.StreamResponse:
    state, body, answer = await _begin(request, "refund")
    if answer is not None:
        return answer
    data = _json(body)
    order = state.find(PROVIDER, str(data.get("invoice_id", "")))
    try:
        amount = parse_amount(data.get("amount"))
    except AmountError:
        return _error(400, "INVALID_AMOUNT", "amount must be tenge with two decimals")
    if order is None or order.state is not OrderState.PAID:
        return _error(400, "NOT_CHARGED", "the invoice was not charged")
    if amount <= 0 or order.refunded_tiyn + amount > order.amount_tiyn:
        return _error(400, "REFUND_EXCEEDS", "the refund exceeds what is left")
    reference = str(data.get("externalId") or "")
    if reference and any(r.reference == reference for r in order.refunds):
        return web.json_response({"status": "OK", "duplicate": True})
    order.refunds.append(Refund("refund", amount, reference))
    return web.json_response({"status": "OK"})


async def callbacks(state: AcquiringState, order: SimOrder, times: int) -> list[int | None]:
    body = transaction(order)
    url = order.callback_urls["success" if order.state is OrderState.PAID else "decline"]
    return [await state.send_callback("POST", url, json=body) for _ in range(times)]


async def payment_page(request: web.Request) -> web.Response:
    return web.Response(text="Halyk ePay payment page (simulated): POST /sim/acquiring/pay "
                             "plays the customer", content_type="text/plain")


def add_routes(app: web.Application) -> None:
    app.router.add_post(API + "/auth/token", token)
    app.router.add_post(API + "/invoices/create", create_invoice)
    app.router.add_get(API + "/check-transaction", check_transaction)
    app.router.add_post(API + "/refund", refund)
    app.router.add_get(BASE + "/pay/invoices/{invoice_id}", payment_page)

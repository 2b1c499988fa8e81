"""The fake Halyk ePay at /halyk-epay, after Halyk's documentation (epayment.kz/docs;
the example bodies: examples.py), not after our client:

- /halyk-epay/oauth2/token (the OAuth host): form-encoded only (JSON is refused),
  client_credentials with the test client's secret and terminal; with invoiceID it issues
  a payment token bound to that invoice (invoiceID 6 to 15 digits, amount, currency KZT,
  postLink, secret_hash), refused for an invoice already paid or with another amount;
- /halyk-epay/payform/payment-api.js: the script our payment page loads (halyk.pay);
- /halyk-epay/api/check-status/payment/transaction/{invoiceID} (a service token):
  resultCode 102 until the customer paid, then 100 and the transaction (statusName CHARGE,
  REJECT, REFUND; amount what is left after refunds, orgAmount what was charged);
- /halyk-epay/api/operation/{transaction id}/refund?amount=&externalID=: 200, or 400
  {code, message} (not charged, under 10 tenge, more than is left). Like the real one as
  far as its documentation says, a refund is not deduplicated by externalID.
The customer (POST /sim/acquiring/pay) pays on the MPP's page: the payment object there
names the invoice and carries its token; the postLink (or failurePostLink) follows.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from mpp_server import jsonutil
from mpp_server.devtools.simulator.acquirers.examples import (
    HALYK_ERROR,
    HALYK_POSTLINK,
    HALYK_STATUS,
    HALYK_STATUS_NOT_FOUND,
    HALYK_TOKEN,
)
from mpp_server.devtools.simulator.acquirers.state import (
    ACQUIRING,
    AcquiringState,
    FaultMode,
    OrderState,
    Refund,
    SimOrder,
)
from mpp_server.money import AmountError, format_amount, parse_amount

PROVIDER = "halyk-epay"
BASE = "/halyk-epay"
OAUTH = BASE + "/oauth2/token"
API = BASE + "/api"
WIDGET = BASE + "/payform/payment-api.js"
# The test credentials the fake accepts (the dev launcher gives them to the server): any
# client id, this secret, this terminal (the documentation's test terminal).
CLIENT_SECRET = "mpp-test-secret"
TERMINAL = "67e34d63-102f-4bd1-898e-370781d0074d"
TOKEN_TTL_S = 7200  # the documentation's expires_in
MIN_REFUND_TIYN = 1000
_INVOICE = re.compile(r"^[0-9]{6,15}$")
_PAYMENT_OBJECT = re.compile(
    r'<script type="application/json" id="halyk-payment">(.*?)</script>', re.S)
_STATUS_NAME = {OrderState.PAID: "CHARGE", OrderState.DECLINED: "REJECT",
                OrderState.EXPIRED: "CANCEL"}


def _error(status: int, code: int, message: str) -> web.Response:
    body = json.loads(HALYK_ERROR.body)
    body.update(code=code, message=message)
    return web.json_response(body, status=status)


async def _begin(request: web.Request, operation: str, *, service: bool
                 ) -> tuple[AcquiringState, bytes, web.StreamResponse | None]:
    state = request.app[ACQUIRING]
    body = await request.read()
    state.record(PROVIDER, operation, request, body)
    answer = await state.fault(PROVIDER, operation, request, {
        FaultMode.REFUSE: _error(400, 100, "simulated refusal"),
        FaultMode.DUPLICATE: _error(400, 101, "the invoice exists")},
        request.match_info.get("invoice_id"))
    if answer is None and service:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        expiry = state.tokens.get(token)
        if expiry is None or asyncio.get_running_loop().time() >= expiry:
            answer = web.json_response({"error": "invalid_token"}, status=401)
    return state, body, answer


def _token_answer(token: str) -> web.Response:
    body = json.loads(HALYK_TOKEN.body)
    body.update(access_token=token, expires_in=TOKEN_TTL_S,
                scope="webapi usermanagement email_send verification statement statistics "
                      "payment")
    return web.json_response(body)


async def token(request: web.Request) -> web.StreamResponse:
    """The OAuth host: a service token, or with invoiceID a payment token for it."""
    operation = "create" if b"invoiceID" in (await request.read()) else "token"
    state, _, answer = await _begin(request, operation, service=False)
    if answer is not None:
        return answer
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return web.json_response({"error": "invalid_request",
                                  "error_description": "form-data expected"}, status=400)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    if form.get("grant_type") != "client_credentials" or not form.get("client_id") \
            or form.get("client_secret") != CLIENT_SECRET or form.get("terminal") != TERMINAL:
        return web.json_response({"error": "invalid_client"}, status=401)
    issued = secrets.token_urlsafe(18)
    if "invoiceID" not in form:
        state.tokens[issued] = asyncio.get_running_loop().time() + TOKEN_TTL_S
        return _token_answer(issued)
    refused = _bind_invoice(request, state, form, issued)
    return refused if refused is not None else _token_answer(issued)


def _bind_invoice(request: web.Request, state: AcquiringState, form: dict[str, str],
                  issued: str) -> web.Response | None:
    invoice_id = form.get("invoiceID", "")
    try:
        amount = parse_amount(form.get("amount"))
    except AmountError:
        return _error(400, 102, "amount")
    if not _INVOICE.match(invoice_id) or amount <= 0 or form.get("currency") != "KZT" \
            or not form.get("postLink") or not form.get("secret_hash"):
        return _error(400, 102, "invoiceID (6-15 digits), amount, currency, postLink, "
                                "secret_hash")
    order = state.find(PROVIDER, invoice_id)
    if order is not None and (order.state is not OrderState.NEW or order.amount_tiyn != amount):
        return _error(400, 101, "the invoice exists")
    if order is None:
        order = SimOrder(PROVIDER, invoice_id, invoice_id, amount, "KZT", "",
                         {"success": form["postLink"],
                          "decline": form.get("failurePostLink") or form["postLink"]})
        state.add(order)
    else:
        order.placements += 1
    if order.token is not None:
        state.by_token.pop(order.token, None)
    order.token, order.secret_hash = issued, form["secret_hash"]
    state.by_token[issued] = (PROVIDER, invoice_id)
    return None


def transaction(order: SimOrder) -> dict[str, Any]:
    """check-status's transaction: the documented example with the order's values."""
    body: dict[str, Any] = json.loads(HALYK_STATUS.body, parse_float=str)["transaction"]
    charged = order.charged_tiyn
    body.update(id=order.transaction_id, invoiceID=order.order_id,
                createdDate=(order.paid_at or order.created_at).isoformat(),
                amount=format_amount(charged - order.refunded_tiyn),
                orgAmount=format_amount(charged), currency=order.charged_in, terminalID=TERMINAL,
                statusName=("REFUND" if order.state is OrderState.PAID
                            and order.refunded_tiyn >= charged
                            else _STATUS_NAME[order.state]),
                reason="" if order.state is OrderState.PAID else "insufficient funds")
    return body


def _numbers(body: dict[str, Any]) -> str:
    """JSON with the amounts (written as text above) as bare numbers, as Halyk sends."""
    text = jsonutil.dumps(body)
    return re.sub(r'"(amount|orgAmount|payoutAmount)":"([0-9]+\.[0-9]{2})"', r'"\1":\2', text)


async def check_status(request: web.Request) -> web.StreamResponse:
    state, _, answer = await _begin(request, "status", service=True)
    if answer is not None:
        return answer
    order = state.find(PROVIDER, request.match_info["invoice_id"])
    if order is not None:
        order.status_checks += 1
    if order is None or order.transaction_id is None:
        return web.json_response(json.loads(HALYK_STATUS_NOT_FOUND.body))
    body = json.loads(HALYK_STATUS.body)
    body["transaction"] = transaction(order)
    return web.Response(text=_numbers(body), content_type="application/json")


async def refund(request: web.Request) -> web.StreamResponse:
    state, _, answer = await _begin(request, "refund", service=True)
    if answer is not None:
        return answer
    order = next((o for o in state.orders.values() if o.provider == PROVIDER
                  and o.transaction_id == request.match_info["transaction_id"]), None)
    try:
        amount = parse_amount(request.query.get("amount", ""))
    except AmountError:
        return _error(400, 102, "amount")
    if order is None or order.state is not OrderState.PAID:
        return _error(400, 103, "the transaction is not charged")
    if amount < MIN_REFUND_TIYN:
        return _error(400, 104, "the minimum refund is 10 tenge")
    if order.refunded_tiyn + amount > order.charged_tiyn:
        return _error(400, 105, "the refund exceeds what is left")
    order.refunds.append(Refund("refund", amount, request.query.get("externalID", "")))
    return web.Response(status=200)


async def widget(request: web.Request) -> web.Response:
    """halyk.pay(paymentObject): in a browser, the form of the fake (POST
    /sim/acquiring/pay plays the customer on it in tests)."""
    return web.Response(text=(
        "window.halyk={pay:function(o){var f=document.createElement('form');"
        "f.method='POST';f.action='/sim/acquiring/pay';var i=document.createElement('input');"
        "i.type='hidden';i.name='paymentObject';i.value=JSON.stringify(o);f.appendChild(i);"
        "document.body.appendChild(f);}};"), content_type="application/javascript")


async def order_of_page(state: AcquiringState, page_url: str) -> SimOrder | None:
    """The customer opens the MPP's page: the payment object names the invoice and
    carries the payment token bound to it."""
    assert state.session is not None
    try:
        async with state.session.get(page_url) as resp:
            page = await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return None  # the page did not open (its server is down): the customer retries
    found = _PAYMENT_OBJECT.search(page)
    if resp.status != 200 or found is None:
        return None
    payment = jsonutil.loads(found.group(1))
    key = state.by_token.get(str(payment.get("auth", {}).get("access_token")))
    order = state.orders.get(key) if key is not None else None
    if key is None or order is None or order.order_id != payment.get("invoiceId"):
        return None
    state.by_url[page_url] = key  # the customer may come back to the page's address
    return order


def pay(order: SimOrder) -> None:
    """The customer's card: the transaction the status and refunds name."""
    order.transaction_id = order.transaction_id or str(uuid.uuid4())
    order.paid_at = order.paid_at or datetime.now(UTC)


async def callbacks(state: AcquiringState, order: SimOrder, times: int) -> list[int | None]:
    """postLink (paid) or failurePostLink: the documented fields, the order's values."""
    body = json.loads(HALYK_POSTLINK.body, parse_float=str)
    paid = order.state is OrderState.PAID
    body.update(amount=format_amount(order.charged_tiyn), currency=order.charged_in,
                code="ok" if paid else "error", id=order.transaction_id,
                invoiceId=order.order_id, secret_hash=order.secret_hash, terminal=TERMINAL,
                reason="success" if paid else "insufficient funds",
                reasonCode=0 if paid else 51)
    url = order.callback_urls["success" if paid else "decline"]
    text = _numbers(body)
    return [await state.send_callback("POST", url, data=text,
                                      headers={"Content-Type": "application/json"})
            for _ in range(times)]


def add_routes(app: web.Application) -> None:
    app.router.add_post(OAUTH, token)
    app.router.add_get(WIDGET, widget)
    app.router.add_get(API + "/check-status/payment/transaction/{invoice_id}", check_status)
    app.router.add_post(API + "/operation/{transaction_id}/refund", refund)

"""The fake Kaspi e-commerce API at /kaspi-ecom (shared/seeds/kaspi-pay-ecommerce-
bitrix.txt): a static bearer token, payments/create (whole tenge, externalId,
callbackUrl), GET payments/{id}, the payment link and its callback."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mpp_server import jsonutil
from mpp_server.devtools.simulator.acquirers.state import (
    ACQUIRING,
    AcquiringState,
    OrderState,
    SimOrder,
)
from mpp_server.money import TIYN_PER_TENGE

PROVIDER = "kaspi-ecom"
BASE = "/kaspi-ecom"
API = BASE + "/api/v1/payments"
TOKEN = "mpp-test-token"
_STATUS = {OrderState.NEW: "CREATED", OrderState.PAID: "COMPLETED",
           OrderState.DECLINED: "FAILED", OrderState.EXPIRED: "EXPIRED"}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


async def _begin(request: web.Request, operation: str
                 ) -> tuple[AcquiringState, bytes, web.StreamResponse | None]:
    state = request.app[ACQUIRING]
    body = await request.read()
    state.record(PROVIDER, operation, request, body)
    answer = await state.fault(PROVIDER, operation, request, duplicate=_error(
        409, "DUPLICATE", "a payment with this externalId exists"))
    if answer is None and request.headers.get("Authorization") != f"Bearer {TOKEN}":
        answer = _error(401, "UNAUTHORIZED", "bad token")
    return state, body, answer


def payment(order: SimOrder) -> dict[str, Any]:
    data: dict[str, Any] = {
        "paymentId": order.order_id, "externalId": order.reference,
        "status": _STATUS[order.state],
        "amount": {"value": order.charged_tiyn // TIYN_PER_TENGE,
                   "currency": order.charged_currency or "KZT"}}
    if order.state is OrderState.DECLINED:
        data["reason"] = "client declined"
    return {"data": data}


async def create(request: web.Request) -> web.StreamResponse:
    state, body, answer = await _begin(request, "create")
    if answer is not None:
        return answer
    try:
        data = jsonutil.loads(body)
    except jsonutil.JSONDecodeError:
        return _error(400, "BAD_REQUEST", "not JSON")
    amount = data.get("amount") if isinstance(data, dict) else None
    value = amount.get("value") if isinstance(amount, dict) else None
    external, callback = data.get("externalId"), data.get("callbackUrl")
    if (not isinstance(value, int) or isinstance(value, bool) or value <= 0
            or amount.get("currency") != "KZT" or not isinstance(external, str)  # type: ignore[union-attr]
            or not isinstance(callback, str)):
        return _error(400, "BAD_REQUEST", "amount.value whole tenge, externalId, callbackUrl")
    if state.find_reference(PROVIDER, external) is not None:
        return _error(409, "DUPLICATE", "a payment with this externalId exists")
    order_id = state.next_id()
    link = f"{request.scheme}://{request.host}{BASE}/pay/{order_id}"
    order = SimOrder(PROVIDER, order_id, external, value * TIYN_PER_TENGE, link,
                     {"success": callback, "decline": callback})
    state.add(order)
    return web.json_response({"data": {"paymentId": order_id, "paymentLink": link}})


async def get_payment(request: web.Request) -> web.StreamResponse:
    state, _, answer = await _begin(request, "status")
    if answer is not None:
        return answer
    order = state.find(PROVIDER, request.match_info["payment_id"])
    if order is None:
        return _error(404, "NOT_FOUND", "no such payment")
    order.status_checks += 1
    return web.json_response(payment(order))


async def callbacks(state: AcquiringState, order: SimOrder, times: int) -> list[int | None]:
    return [await state.send_callback("POST", order.callback_urls["success"],
                                      json=payment(order)) for _ in range(times)]


async def payment_page(request: web.Request) -> web.Response:
    return web.Response(text="Kaspi payment link (simulated): POST /sim/acquiring/pay plays "
                             "the customer", content_type="text/plain")


def add_routes(app: web.Application) -> None:
    app.router.add_post(API + "/create", create)
    app.router.add_get(API + "/{payment_id}", get_payment)
    app.router.add_get(BASE + "/pay/{payment_id}", payment_page)

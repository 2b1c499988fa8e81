"""The control API of the fake acquirers (tests, demo): `POST /sim/acquiring/pay` plays
the customer on a payment page (shared/spec/wallet-api.md): Kapital's hosted page,
Kaspi's link, or for Halyk the MPP's own page, whose payment object names the invoice and
carries its token. Plus faults, the record of what the MPP sent, and an order's view."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

import pydantic
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from mpp_server import jsonutil
from mpp_server.devtools.simulator.acquirers import halyk_epay, kapital, kaspi_ecom
from mpp_server.devtools.simulator.acquirers.state import (
    ACQUIRING,
    AcquiringState,
    Fault,
    FaultMode,
    OrderState,
    Refund,
    SimOrder,
)
from mpp_server.devtools.simulator.wire import AmountTiyn

Callbacks = Callable[[AcquiringState, SimOrder, int], Awaitable[list[int | None]]]
CALLBACKS: dict[str, Callbacks] = {halyk_epay.PROVIDER: halyk_epay.callbacks,
                                   kapital.PROVIDER: kapital.callbacks,
                                   kaspi_ecom.PROVIDER: kaspi_ecom.callbacks}
TIMES = {"send": 1, "skip": 0, "twice": 2}


class _Control(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PayIn(_Control):
    paymentUrl: str = Field(min_length=1, max_length=2048)
    outcome: Literal["success", "decline"]
    callback: Literal["send", "skip", "twice"] = "send"
    # A broken acquirer: the card is charged another amount, or in another currency
    # (as the acquirer names it: "USD", "840"), than the order's.
    chargedAmount: AmountTiyn | None = Field(default=None, gt=0)
    chargedCurrency: str | None = Field(default=None, min_length=1, max_length=8)


class FaultIn(_Control):
    provider: Literal["halyk-epay", "kapital", "kaspi-ecom"]
    operation: Literal["token", "create", "status", "refund", "device"]
    mode: FaultMode
    times: int = Field(default=1, ge=1, le=1000)
    delayMs: int = Field(default=0, ge=0, le=600_000)
    # Only the calls naming this order (its providerOrderId): status calls.
    orderId: str | None = Field(default=None, min_length=1, max_length=128)


class CabinetRefundIn(_Control):
    amount: AmountTiyn = Field(gt=0)


class ExpireIn(_Control):
    """A payment page: the one the customer opens, or whose session the acquirer ends."""

    paymentUrl: str = Field(min_length=1, max_length=2048)


def _json(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=jsonutil.dumps)


async def _body(request: web.Request, model: type[pydantic.BaseModel]) -> pydantic.BaseModel:
    try:
        return model.model_validate_json(await request.read())
    except pydantic.ValidationError as exc:
        raise web.HTTPBadRequest(text=jsonutil.dumps({"error": {
            "code": "VALIDATION_ERROR", "message": str(exc)[:500]}}),
            content_type="application/json") from exc


async def _order_at(state: AcquiringState, payment_url: str) -> SimOrder:
    key = state.by_url.get(payment_url)
    order = state.orders[key] if key is not None else None
    if order is None and payment_url.startswith(("http://", "https://")):
        order = await halyk_epay.order_of_page(state, payment_url)
    if order is None:
        raise web.HTTPNotFound(text=jsonutil.dumps({"error": {
            "code": "NOT_FOUND", "message": "no order has this payment page"}}),
            content_type="application/json")
    return order


async def pay(request: web.Request) -> web.Response:
    """The customer on the payment page: the order becomes paid or declined (once: a
    second play of a decided order only sends its callbacks again), and its callback
    goes to the MPP once, never or twice."""
    body = await _body(request, PayIn)
    assert isinstance(body, PayIn)
    state = request.app[ACQUIRING]
    order = await _order_at(state, body.paymentUrl)
    if order.state is OrderState.NEW:
        if body.outcome == "success":
            order.state, order.paid_at = OrderState.PAID, datetime.now(UTC)
            order.charged_override_tiyn = body.chargedAmount
            order.charged_currency = body.chargedCurrency
        else:
            order.state = OrderState.DECLINED
        if order.provider == halyk_epay.PROVIDER:
            halyk_epay.pay(order)
    answered = await CALLBACKS[order.provider](state, order, TIMES[body.callback])
    return _json({"provider": order.provider, "providerOrderId": order.order_id,
                  "status": order.state.value, "callbacksAnswered": answered})


async def open_page(request: web.Request) -> web.Response:
    """The customer opens the payment page and leaves it open (pays later: pay)."""
    body = await _body(request, ExpireIn)
    assert isinstance(body, ExpireIn)
    return _json((await _order_at(request.app[ACQUIRING], body.paymentUrl)).view())


async def expire(request: web.Request) -> web.Response:
    """The acquirer's session of an unpaid order ends."""
    body = await _body(request, ExpireIn)
    assert isinstance(body, ExpireIn)
    order = await _order_at(request.app[ACQUIRING], body.paymentUrl)
    if order.state is OrderState.NEW:
        order.state = OrderState.EXPIRED
    return _json(order.view())


async def add_fault(request: web.Request) -> web.Response:
    body = await _body(request, FaultIn)
    assert isinstance(body, FaultIn)
    request.app[ACQUIRING].add_fault(body.provider, body.operation,
                                     Fault(body.mode, body.delayMs), body.times, body.orderId)
    return _json({})


async def clear_faults(request: web.Request) -> web.Response:
    request.app[ACQUIRING].faults.clear()
    return _json({})


async def expire_tokens(request: web.Request) -> web.Response:
    """Every Halyk token issued so far expires now."""
    state = request.app[ACQUIRING]
    expired = len(state.tokens)
    state.tokens.clear()
    return _json({"expired": expired})


async def recorded(request: web.Request) -> web.Response:
    provider = request.query.get("provider")
    return _json({"requests": [r for r in request.app[ACQUIRING].recorded
                               if provider is None or r["provider"] == provider]})


async def get_order(request: web.Request) -> web.Response:
    order = request.app[ACQUIRING].find(request.match_info["provider"],
                                        request.match_info["order_id"])
    if order is None:
        return _json({"error": {"code": "NOT_FOUND", "message": "no such order"}}, 404)
    return _json(order.view())


async def orders_mentioning(request: web.Request) -> web.Response:
    """`?provider=&mentioning=`: the orders of one of our ids (how many one top-up placed)."""
    text = request.query.get("mentioning", "")
    if not text:
        return _json({"error": {"code": "VALIDATION_ERROR", "message": "mentioning="}}, 400)
    found = request.app[ACQUIRING].mentioning(request.query.get("provider", ""), text)
    return _json({"orders": [o.view() for o in found]})


async def cabinet_refund(request: web.Request) -> web.Response:
    """Money back to the card done outside our API (the merchant's cabinet at the bank):
    the acquirer's books then show a refund we did not send."""
    body = await _body(request, CabinetRefundIn)
    assert isinstance(body, CabinetRefundIn)
    order = request.app[ACQUIRING].find(request.match_info["provider"],
                                        request.match_info["order_id"])
    if order is None or order.state is not OrderState.PAID:
        return _json({"error": {"code": "NOT_FOUND", "message": "no paid order"}}, 404)
    order.refunds.append(Refund("cabinet", body.amount, ""))
    return _json(order.view())


async def forget_devices(request: web.Request) -> web.Response:
    """Kaspi deactivates every registered device (its -1501 from then on)."""
    state = request.app[ACQUIRING]
    forgotten = len(state.devices)
    state.devices.clear()
    return _json({"forgotten": forgotten})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/sim/acquiring/pay", pay)
    app.router.add_post("/sim/acquiring/open", open_page)
    app.router.add_post("/sim/acquiring/expire", expire)
    app.router.add_post("/sim/acquiring/faults", add_fault)
    app.router.add_delete("/sim/acquiring/faults", clear_faults)
    app.router.add_post("/sim/acquiring/tokens/expire", expire_tokens)
    app.router.add_delete("/sim/acquiring/devices", forget_devices)
    app.router.add_get("/sim/acquiring/requests", recorded)
    app.router.add_get("/sim/acquiring/orders", orders_mentioning)
    app.router.add_get("/sim/acquiring/orders/{provider}/{order_id}", get_order)
    app.router.add_post("/sim/acquiring/orders/{provider}/{order_id}/refunds", cabinet_refund)

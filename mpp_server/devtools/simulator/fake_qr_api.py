"""Kaspi's endpoints as the MPP sees them: `POST /api/v1/qr/{scan,checkout,notifyPayment}`.

Every business outcome is HTTP 200 with `result{resultCode, resultMessage}` (§1.9).
Order of checks: an injected fault first (it models the network and Kaspi's own
trouble), then headers (§1.7), then the body, then the operation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import pydantic
from aiohttp import web

from mpp_server import jsonutil
from mpp_server.devtools.simulator import answers, catalogue
from mpp_server.devtools.simulator.context import SIM, Simulator
from mpp_server.devtools.simulator.faults import (
    DEFAULT_TIMEOUT_MS,
    Endpoint,
    FaultMode,
    drop_connection,
    pause,
)
from mpp_server.devtools.simulator.model import KaspiError
from mpp_server.devtools.simulator.refunds import RefundStyle
from mpp_server.devtools.simulator.state import CapacityExceeded, RefundOrder
from mpp_server.devtools.simulator.wire import (
    CheckoutRequest,
    NotifyRequest,
    ScanRequest,
    error_answer,
)
from mpp_server.kaspi_client.codes import ResultCode

M = TypeVar("M", bound=pydantic.BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = "application/json"
MAX_REQUEST_ID = 64


def _locale(request: web.Request, sim: Simulator) -> str:
    caller = request.headers.get("X-Caller-Name")
    if caller is None or caller not in sim.settings.caller_names:
        raise KaspiError(ResultCode.UNKNOWN_SOURCE, "unknown X-Caller-Name")
    request_id = request.headers.get("X-Request-ID", "")
    if not request_id or len(request_id) > MAX_REQUEST_ID:
        raise KaspiError(ResultCode.PARAM_ILLEGAL, "X-Request-ID is required, ≤ 64 chars")
    locale = request.headers.get("X-Locale", catalogue.LOCALE_RU)
    if locale not in catalogue.LOCALES:
        raise KaspiError(ResultCode.PARAM_ILLEGAL, "X-Locale must be ru-RU or kk-KZ")
    return locale


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate(jsonutil.loads(raw))
    except (jsonutil.JSONDecodeError, pydantic.ValidationError) as exc:
        raise KaspiError(ResultCode.PARAM_ILLEGAL, _first_line(exc)) from exc


def _first_line(exc: Exception) -> str:
    return str(exc).replace("\n", " ")[:256]


async def _scan(request: web.Request, sim: Simulator, locale: str) -> bytes:
    req = _parse(ScanRequest, await request.read())
    outcome = sim.state.scan(req)
    qr = outcome.qr
    if outcome.start_refund:
        assert qr.refund_id and qr.refund_payment_id and qr.refund_amount_tiyn
        order = RefundOrder(qr.refund_payment_id, qr.refund_id, qr.refund_amount_tiyn)
        sim.in_background(sim.refund(order, RefundStyle()))
    return answers.scan(qr, outcome.payment, locale, sim.state.tz)


async def _checkout(request: web.Request, sim: Simulator, locale: str) -> bytes:
    return sim.state.checkout(_parse(CheckoutRequest, await request.read()))


async def _notify(request: web.Request, sim: Simulator, locale: str) -> bytes:
    return sim.state.notify(_parse(NotifyRequest, await request.read()))


Operation = Callable[[web.Request, Simulator, str], Awaitable[bytes]]


def kaspi_handler(endpoint: Endpoint, operation: Operation) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        sim = request.app[SIM]
        fault = sim.faults.take(endpoint)
        if fault is not None:
            delay_ms = fault.delay_ms
            if fault.mode is FaultMode.TIMEOUT:
                delay_ms = delay_ms or DEFAULT_TIMEOUT_MS
            await pause(request, delay_ms, sim.stopping)
            if fault.mode is FaultMode.TIMEOUT:
                drop_connection(request)
                return web.Response(status=504)  # never reaches the client
            if fault.mode is FaultMode.HTTP500:
                return web.Response(status=500, text="Internal Server Error")
            if fault.mode is FaultMode.ERROR_CODE:
                code = fault.result_code or ResultCode.UNKNOWN_EXCEPTION
                return web.Response(body=error_answer(code, "injected fault"),
                                    content_type=JSON)
        try:
            body = await operation(request, sim, _locale(request, sim))
        except KaspiError as exc:
            body = error_answer(exc.code, exc.message)
        except CapacityExceeded as exc:
            body = error_answer(ResultCode.UNKNOWN_EXCEPTION, str(exc))
        if fault is not None and fault.raw_body is not None:  # replace_answer
            return web.Response(text=fault.raw_body, content_type=JSON)
        if fault is not None:  # reset_after_processing: done, but the reply is lost
            drop_connection(request)
        return web.Response(body=body, content_type=JSON)

    return handler


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/qr/scan", kaspi_handler(Endpoint.SCAN, _scan))
    app.router.add_post("/api/v1/qr/checkout", kaspi_handler(Endpoint.CHECKOUT, _checkout))
    app.router.add_post("/api/v1/qr/notifyPayment",
                        kaspi_handler(Endpoint.NOTIFY_PAYMENT, _notify))

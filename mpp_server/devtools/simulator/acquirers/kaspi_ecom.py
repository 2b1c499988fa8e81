"""The fake Kaspi Pay QR API for partners at /kaspi-qr/{r1,r2,r3}/v01 (its answers:
examples.py): r1 takes the test `Api-Key`, r2 and r3 a client certificate signed by the
test CA (the simulator's TLS listener); every call needs an X-Request-ID. Errors are
HTTP 200 with a StatusCode other than 0, as Kaspi answers them.

- device/register {DeviceId, TradePointId}: the DeviceToken; a DeviceId seen before is
  refused (-1503), an unknown trade point too (-99000002);
- qr/create-link {DeviceToken, Amount, ExternalId}: an unknown device is -1501, an
  ExternalId used before -1 (our assumption: Kaspi's answer to it is not public), else
  the link, its PaymentId and ExpireDate;
- payment/status/{PaymentId}: QrTokenCreated until the customer pays, then Processed, or
  Error (declined; the link expired); an unknown id is -1601.
The customer (POST /sim/acquiring/pay) pays on the link's page. Kaspi calls nobody back.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from mpp_server import jsonutil
from mpp_server.devtools.simulator.acquirers.examples import (
    KASPI_DEVICE,
    KASPI_ERROR,
    KASPI_LINK,
    KASPI_STATUS,
)
from mpp_server.devtools.simulator.acquirers.state import (
    ACQUIRING,
    MAX_DEVICES,
    AcquiringState,
    FaultMode,
    OrderState,
    SimOrder,
    client_certificate_cn,
)
from mpp_server.kaspi_client.models import KZ_TZ
from mpp_server.money import TIYN_PER_TENGE

PROVIDER = "kaspi-ecom"
BASE = "/kaspi-qr"
# The test credentials the fake accepts (the dev launcher gives them to the server).
API_KEY = "mpp-test-api-key"
TRADE_POINT_ID = "1001"
LINK_TTL = timedelta(minutes=30)
DEVICE_EXISTS, DEVICE_NOT_FOUND, PAYMENT_NOT_FOUND = -1503, -1501, -1601
TRADE_POINT_NOT_FOUND, DUPLICATE, SERVICE_UNAVAILABLE = -99000002, -1, -999
_STATUS = {OrderState.NEW: "QrTokenCreated", OrderState.PAID: "Processed",
           OrderState.DECLINED: "Error", OrderState.EXPIRED: "Error"}


def _error(code: int, message: str) -> web.Response:
    body = json.loads(KASPI_ERROR.body)
    body.update(StatusCode=code, Message=message)
    return web.json_response(body)


def _ok(example: str, data: dict[str, Any]) -> web.Response:
    body = json.loads(example)
    body["Data"].update(data)
    return web.Response(text=jsonutil.dumps(body), content_type="application/json")


def _allowed(request: web.Request) -> bool:
    """r1: the Api-Key; r2 and r3: a client certificate (mutual TLS)."""
    if request.match_info["scheme"] == "r1":
        return request.headers.get("Api-Key") == API_KEY
    return client_certificate_cn(request) is not None


async def _begin(request: web.Request, operation: str
                 ) -> tuple[AcquiringState, dict[str, Any], web.StreamResponse | None]:
    state = request.app[ACQUIRING]
    raw = await request.read()
    state.record(PROVIDER, operation, request, raw)
    answer = await state.fault(PROVIDER, operation, request, {
        FaultMode.REFUSE: _error(-99000033, "simulated refusal"),
        FaultMode.DUPLICATE: _error(DUPLICATE, "ExternalId is already used"),
        FaultMode.SYSTEM_ERROR: _error(SERVICE_UNAVAILABLE, "service unavailable")},
        request.match_info.get("payment_id"))
    if answer is None and not _allowed(request):
        answer = web.json_response({"message": "unauthorized"}, status=401)
    if answer is None and not request.headers.get("X-Request-ID"):
        answer = _error(-1, "X-Request-ID is required")
    body: dict[str, Any] = {}
    if answer is None and request.method == "POST":
        try:
            parsed = jsonutil.loads(raw)
        except jsonutil.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            answer = _error(-1, "a JSON object is expected")
        else:
            body = parsed
    return state, body, answer


async def register_device(request: web.Request) -> web.StreamResponse:
    state, body, answer = await _begin(request, "device")
    if answer is not None:
        return answer
    device_id = body.get("DeviceId")
    if not isinstance(device_id, str) or not device_id:
        return _error(-1, "DeviceId is required")
    if str(body.get("TradePointId")) != TRADE_POINT_ID:
        return _error(TRADE_POINT_NOT_FOUND, "trade point not found")
    if device_id in state.devices:
        return _error(DEVICE_EXISTS, "the device is already registered")
    if len(state.devices) >= MAX_DEVICES:
        return _error(SERVICE_UNAVAILABLE, "too many devices")
    state.devices[device_id] = secrets.token_hex(16)
    return _ok(KASPI_DEVICE.body, {"DeviceToken": state.devices[device_id]})


async def create_link(request: web.Request) -> web.StreamResponse:
    state, body, answer = await _begin(request, "create")
    if answer is not None:
        return answer
    if body.get("DeviceToken") not in state.devices.values():
        return _error(DEVICE_NOT_FOUND, "device not found")
    amount, external = body.get("Amount"), body.get("ExternalId")
    if not isinstance(amount, int | Decimal) or isinstance(amount, bool) or amount <= 0 \
            or not isinstance(external, str) or not external:
        return _error(-1, "Amount and ExternalId are required")
    if state.find_reference(PROVIDER, external) is not None:
        return _error(DUPLICATE, "ExternalId is already used")
    payment_id = state.next_id()
    link = f"{request.scheme}://{request.host}{BASE}/pay/{payment_id}"
    order = SimOrder(PROVIDER, payment_id, external, int(amount * TIYN_PER_TENGE), "KZT", link,
                     {})
    state.add(order)
    expires = datetime.now(KZ_TZ) + LINK_TTL  # Kaspi's times are Kazakhstan's
    return _ok(KASPI_LINK.body, {"PaymentLink": link, "PaymentId": int(payment_id),
                                 "ExpireDate": expires.isoformat(timespec="milliseconds")})


async def payment_status(request: web.Request) -> web.StreamResponse:
    state, _, answer = await _begin(request, "status")
    if answer is not None:
        return answer
    order = state.find(PROVIDER, request.match_info["payment_id"])
    if order is None:
        return _error(PAYMENT_NOT_FOUND, "purchase not found")
    order.status_checks += 1
    return _ok(KASPI_STATUS.body, {"Status": _STATUS[order.state]})


async def callbacks(state: AcquiringState, order: SimOrder, times: int) -> list[int | None]:
    return []  # Kaspi's QR API calls nobody back: the MPP polls


async def payment_page(request: web.Request) -> web.Response:
    return web.Response(text="Kaspi payment link (simulated): POST /sim/acquiring/pay plays "
                             "the customer", content_type="text/plain")


def add_routes(app: web.Application) -> None:
    api = BASE + "/{scheme:r[123]}/v01"
    app.router.add_post(api + "/device/register", register_device)
    app.router.add_post(api + "/qr/create-link", create_link)
    app.router.add_get(api + "/payment/status/{payment_id}", payment_status)
    app.router.add_get(BASE + "/pay/{payment_id}", payment_page)

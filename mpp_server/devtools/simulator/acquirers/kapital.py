"""The fake Kapital Bank TKKPG gateway at /kapital (shared/seeds/kapital-bank-bitrix.txt):
XML requests that must be UTF-8 without a BOM, sent as `text/xml; charset=utf-8`
(anything else answers Status 30, as the real gateway chokes on it); CreateOrder,
GetOrderStatus, Reverse (the whole amount, the day it was paid), Refund; the hosted
payment page and its Approve/Decline callbacks with OrderId and SessionId."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from aiohttp import web

from mpp_server.devtools.simulator.acquirers.state import (
    ACQUIRING,
    AcquiringState,
    OrderState,
    Refund,
    SimOrder,
)

PROVIDER = "kapital"
BASE = "/kapital"
CONTENT_TYPE = "text/xml; charset=utf-8"
KZ = timedelta(hours=5)
STATUS_OK, STATUS_FORMAT, STATUS_REFUSED, STATUS_UNKNOWN = "00", "30", "54", "10"
_ORDER_STATUS = {OrderState.NEW: "CREATED", OrderState.PAID: "APPROVED",
                 OrderState.DECLINED: "DECLINED", OrderState.EXPIRED: "EXPIRED"}


def _answer(operation: str, status: str, order: dict[str, str] | None = None) -> web.Response:
    root = ET.Element("TKKPG")
    response = ET.SubElement(root, "Response")
    ET.SubElement(response, "Operation").text = operation
    ET.SubElement(response, "Status").text = status
    if order is not None:
        element = ET.SubElement(response, "Order")
        for tag, text in order.items():
            ET.SubElement(element, tag).text = text
    return web.Response(body=ET.tostring(root, encoding="utf-8", xml_declaration=True),
                        content_type="text/xml", charset="utf-8")


def _text(root: ET.Element, path: str) -> str:
    found = root.find(path)
    return (found.text or "").strip() if found is not None else ""


def _well_encoded(request: web.Request, body: bytes) -> ET.Element | None:
    """The gateway's complaint: anything but UTF-8 XML without a BOM, declared so."""
    if request.headers.get("Content-Type", "").replace(" ", "").lower() != \
            CONTENT_TYPE.replace(" ", ""):
        return None
    if body.startswith(b"\xef\xbb\xbf") or b"<!DOCTYPE" in body.upper():
        return None
    try:
        body.decode("utf-8")
        return ET.fromstring(body)
    except (UnicodeDecodeError, ET.ParseError):
        return None


async def order_api(request: web.Request) -> web.StreamResponse:
    state = request.app[ACQUIRING]
    body = await request.read()
    root = _well_encoded(request, body)
    operation = _text(root, "Request/Operation") if root is not None else ""
    kind = {"CreateOrder": "create", "GetOrderStatus": "status", "Reverse": "refund",
            "Refund": "refund"}.get(operation, "unknown")
    state.record(PROVIDER, kind, request, body)
    fault = await state.fault(PROVIDER, kind, request, _answer(operation, STATUS_REFUSED))
    if fault is not None:
        return fault
    if root is None or kind == "unknown":
        return _answer(operation, STATUS_FORMAT)
    if operation == "CreateOrder":
        return _create(request, state, root)
    order = state.find(PROVIDER, _text(root, "Request/Order/OrderID"))
    if order is None or order.session_id != _text(root, "Request/SessionID") or \
            _text(root, "Request/Order/Merchant") == "":
        return _answer(operation, STATUS_UNKNOWN)
    if operation == "GetOrderStatus":
        order.status_checks += 1
        return _answer(operation, STATUS_OK, {
            "OrderID": order.order_id, "OrderStatus": _ORDER_STATUS[order.state],
            "Amount": str(order.charged_tiyn), "Currency": order.charged_currency or "398",
            "RefundAmount": str(order.refunded_tiyn)})
    return _money_back(operation, order, root)


def _create(request: web.Request, state: AcquiringState, root: ET.Element) -> web.Response:
    amount = _text(root, "Request/Order/Amount")
    approve = _text(root, "Request/Order/ApproveURL")
    if (not amount.isdigit() or int(amount) <= 0 or _text(root, "Request/Order/Currency")
            != "398" or not _text(root, "Request/Order/Merchant") or not approve):
        return _answer("CreateOrder", STATUS_FORMAT)
    order_id, session_id = state.next_id(), secrets.token_hex(16).upper()
    page = f"{request.scheme}://{request.host}{BASE}/index.jsp"
    order = SimOrder(PROVIDER, order_id, _text(root, "Request/Order/Description"), int(amount),
                     f"{page}?ORDERID={order_id}&SESSIONID={session_id}",
                     {"success": approve,
                      "decline": _text(root, "Request/Order/DeclineURL") or approve,
                      "cancel": _text(root, "Request/Order/CancelURL") or approve},
                     session_id=session_id)
    state.add(order)
    return _answer("CreateOrder", STATUS_OK, {"OrderID": order_id, "SessionID": session_id,
                                             "URL": page})


def _money_back(operation: str, order: SimOrder, root: ET.Element) -> web.Response:
    if order.state is not OrderState.PAID:
        return _answer(operation, STATUS_REFUSED)
    if operation == "Reverse":
        paid_day = (order.paid_at or datetime.now(UTC)) + KZ
        if order.refunds or paid_day.date() != (datetime.now(UTC) + KZ).date():
            return _answer(operation, STATUS_REFUSED)
        amount = order.amount_tiyn
    else:
        text = _text(root, "Request/Refund/Amount")
        if not text.isdigit() or _text(root, "Request/Refund/Currency") != "398":
            return _answer(operation, STATUS_FORMAT)
        amount = int(text)
        if amount <= 0 or order.refunded_tiyn + amount > order.amount_tiyn:
            return _answer(operation, STATUS_REFUSED)
    order.refunds.append(Refund(operation, amount, ""))
    return _answer(operation, STATUS_OK, {"OrderID": order.order_id})


async def callbacks(state: AcquiringState, order: SimOrder, times: int) -> list[int | None]:
    url = order.callback_urls["success" if order.state is OrderState.PAID else "decline"]
    form = {"OrderId": order.order_id, "SessionId": order.session_id or ""}
    return [await state.send_callback("POST", url, data=form) for _ in range(times)]


async def payment_page(request: web.Request) -> web.Response:
    return web.Response(text="Kapital Bank hosted payment page (simulated): POST "
                             "/sim/acquiring/pay plays the customer", content_type="text/plain")


def add_routes(app: web.Application) -> None:
    app.router.add_post(BASE + "/api/order/", order_api)
    app.router.add_get(BASE + "/index.jsp", payment_page)

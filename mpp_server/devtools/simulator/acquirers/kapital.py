"""The fake Kapital Bank TWPG gateway at /kapital/Exec (its answers: examples.py), served
on the simulator's TLS listener only, behind mutual TLS: a caller without a client
certificate signed by the test CA never gets an answer, and one whose certificate names
another merchant than the request's gets Status 10.

XML that is not UTF-8 without a BOM, carries a DOCTYPE or does not parse answers Status
30; CreateOrder (currencies the merchant is enabled for: SIM_KAPITAL_CURRENCIES),
GetOrderStatus, GetOrderInformation (amount, currency, refunded), Reverse (the whole
amount, on the bank's day of the payment, Baku UTC+4), Refund (up to what is left); an
unknown order or session, or money back that is not allowed, Status 54. The hosted page
(/kapital/index.jsp) sends the browser back to ApproveURL or DeclineURL with xmlmsg.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from mpp_server.devtools.simulator.acquirers.examples import (
    KAPITAL_CREATED,
    KAPITAL_INFORMATION,
    KAPITAL_REVERSED,
    KAPITAL_STATUS,
    KAPITAL_XMLMSG,
)
from mpp_server.devtools.simulator.acquirers.state import (
    ACQUIRING,
    AcquiringState,
    FaultMode,
    OrderState,
    Refund,
    SimOrder,
    client_certificate_cn,
)

PROVIDER = "kapital"
BASE = "/kapital"
EXEC = BASE + "/Exec"
# The test merchant's id: the CN of the client certificate the dev launcher makes.
MERCHANT_ID = "MPPTEST"
BAKU = timedelta(hours=4)
STATUS_OK, STATUS_NO_ACCESS, STATUS_FORMAT = "00", "10", "30"
STATUS_REFUSED, STATUS_SYSTEM = "54", "96"
_OPERATIONS = {"CreateOrder": "create", "GetOrderStatus": "status",
               "GetOrderInformation": "status", "Reverse": "refund", "Refund": "refund"}


def _template(xml: str, operation: str, status: str) -> tuple[ET.Element, ET.Element]:
    root = ET.fromstring(xml.encode())
    response = root.find("Response")
    assert response is not None
    for tag, text in (("Operation", operation), ("Status", status)):
        found = response.find(tag)
        assert found is not None
        found.text = text
    return root, response


def _answer(root: ET.Element) -> web.Response:
    return web.Response(body=ET.tostring(root, encoding="utf-8", xml_declaration=True),
                        content_type="text/xml", charset="utf-8")


def _status_only(operation: str, status: str) -> web.Response:
    root, response = _template(KAPITAL_STATUS.body, operation, status)
    for child in list(response):
        if child.tag not in ("Operation", "Status"):
            response.remove(child)
    return _answer(root)


def _fill(element: ET.Element, values: dict[str, str]) -> None:
    for tag, text in values.items():
        found = next((e for e in element.iter() if e.tag == tag), None)
        if found is not None:
            found.text = text


def _text(root: ET.Element, path: str) -> str:
    found = root.find(path)
    return (found.text or "").strip() if found is not None else ""


def _readable(request: web.Request, body: bytes) -> ET.Element | None:
    """The gateway's complaint (Status 30): anything but UTF-8 XML without a BOM."""
    if not request.content_type.endswith("xml") or body.startswith(b"\xef\xbb\xbf") \
            or b"<!DOCTYPE" in body.upper():
        return None
    try:
        body.decode("utf-8")
        root = ET.fromstring(body)
    except (UnicodeDecodeError, ET.ParseError):
        return None
    return root if root.tag == "TKKPG" else None


async def exec_endpoint(request: web.Request) -> web.StreamResponse:
    state = request.app[ACQUIRING]
    merchant = client_certificate_cn(request)
    if merchant is None:
        raise web.HTTPForbidden(text="a client certificate is required")
    body = await request.read()
    root = _readable(request, body)
    operation = _text(root, "Request/Operation") if root is not None else ""
    kind = _OPERATIONS.get(operation, "unknown")
    state.record(PROVIDER, kind, request, body)
    fault = await state.fault(PROVIDER, kind, request, {
        FaultMode.REFUSE: _status_only(operation, STATUS_REFUSED),
        FaultMode.SYSTEM_ERROR: _status_only(operation, STATUS_SYSTEM),
        FaultMode.HTTP500: web.Response(status=500, text="gateway failure")},
        _text(root, "Request/Order/OrderID") if root is not None else None)
    if fault is not None:
        return fault
    if root is None or kind == "unknown":
        return _status_only(operation, STATUS_FORMAT)
    if _text(root, "Request/Order/Merchant") != merchant:
        return _status_only(operation, STATUS_NO_ACCESS)
    if operation == "CreateOrder":
        return _create(request, state, root)
    order = state.find(PROVIDER, _text(root, "Request/Order/OrderID"))
    if order is None or order.session_id != _text(root, "Request/SessionID"):
        return _status_only(operation, STATUS_REFUSED)
    if operation == "GetOrderStatus":
        order.status_checks += 1
        answer, response = _template(KAPITAL_STATUS.body, operation, STATUS_OK)
        _fill(response, {"OrderID": order.order_id, "OrderStatus": order_status(order)})
        return _answer(answer)
    if operation == "GetOrderInformation":
        return _answer(information(order))
    return _money_back(operation, order, root)


def order_status(order: SimOrder) -> str:
    if order.state is not OrderState.PAID:
        return {OrderState.NEW: "CREATED", OrderState.DECLINED: "DECLINED",
                OrderState.EXPIRED: "EXPIRED"}[order.state]
    if any(r.operation == "Reverse" for r in order.refunds):
        return "REVERSED"
    return "REFUNDED" if order.refunded_tiyn >= order.charged_tiyn else "APPROVED"


def information(order: SimOrder) -> ET.Element:
    root, response = _template(KAPITAL_INFORMATION.body, "GetOrderInformation", STATUS_OK)
    paid = order.paid_at or order.created_at
    _fill(response, {"id": order.order_id, "SessionID": order.session_id or "",
                     "createDate": f"{order.created_at + BAKU:%Y-%m-%d %H:%M:%S}",
                     "payDate": f"{paid + BAKU:%Y-%m-%d %H:%M:%S}",
                     "Amount": str(order.charged_tiyn), "Currency": order.charged_in,
                     "Orderstatus": order_status(order), "Description": order.reference,
                     "RefundAmount": str(order.refunded_tiyn), "RefundCurrency": order.currency})
    return root


def _create(request: web.Request, state: AcquiringState, root: ET.Element) -> web.Response:
    amount = _text(root, "Request/Order/Amount")
    approve = _text(root, "Request/Order/ApproveURL")
    currency = _text(root, "Request/Order/Currency")
    if not amount.isdigit() or int(amount) <= 0 or currency not in state.kapital_currencies \
            or not approve:
        return _status_only("CreateOrder", STATUS_FORMAT)
    order_id, session_id = state.next_id(), secrets.token_hex(16).upper()
    page = f"{request.scheme}://{request.host}{BASE}/index.jsp"
    order = SimOrder(PROVIDER, order_id, _text(root, "Request/Order/Description"), int(amount),
                     currency, f"{page}?ORDERID={order_id}&SESSIONID={session_id}",
                     {"success": approve,
                      "decline": _text(root, "Request/Order/DeclineURL") or approve,
                      "cancel": _text(root, "Request/Order/CancelURL") or approve},
                     session_id=session_id)
    state.add(order)
    answer, response = _template(KAPITAL_CREATED.body, "CreateOrder", STATUS_OK)
    _fill(response, {"OrderID": order_id, "SessionID": session_id, "URL": page})
    return _answer(answer)


def _money_back(operation: str, order: SimOrder, root: ET.Element) -> web.Response:
    if order.state is not OrderState.PAID:
        return _status_only(operation, STATUS_REFUSED)
    if operation == "Reverse":
        paid_day = ((order.paid_at or datetime.now(UTC)) + BAKU).date()
        if order.refunds or paid_day != (datetime.now(UTC) + BAKU).date():
            return _status_only(operation, STATUS_REFUSED)
        amount = order.charged_tiyn
    else:
        text = _text(root, "Request/Refund/Amount")
        if not text.isdigit() or _text(root, "Request/Refund/Currency") != order.currency:
            return _status_only(operation, STATUS_FORMAT)
        amount = int(text)
        if amount <= 0 or order.refunded_tiyn + amount > order.charged_tiyn:
            return _status_only(operation, STATUS_REFUSED)
    order.refunds.append(Refund(operation, amount, ""))
    answer, response = _template(KAPITAL_REVERSED.body, operation, STATUS_OK)
    if operation == "Refund":
        reversal = response.find("Reversal")
        assert reversal is not None
        reversal.tag = "Refund"
    return _answer(answer)


def xmlmsg(order: SimOrder) -> str:
    """What the browser brings back to Approve/DeclineURL: the Message, the order's."""
    message = ET.fromstring(KAPITAL_XMLMSG.body.encode())
    paid = order.state is OrderState.PAID
    _fill(message, {"OrderID": order.order_id, "SessionID": order.session_id or "",
                    "PurchaseAmount": str(order.charged_tiyn), "Currency": order.charged_in,
                    "ResponseCode": "000" if paid else "051",
                    "ResponseDescription": "APPROVED" if paid else "DECLINED",
                    "OrderStatus": "APPROVED" if paid else "DECLINED",
                    "OrderDescription": order.reference})
    message.set("date", f"{datetime.now(UTC) + BAKU:%d/%m/%Y %H:%M:%S}")
    return ET.tostring(message, encoding="unicode")


async def callbacks(state: AcquiringState, order: SimOrder, times: int) -> list[int | None]:
    url = order.callback_urls["success" if order.state is OrderState.PAID else "decline"]
    form: dict[str, Any] = {"xmlmsg": xmlmsg(order)}
    return [await state.send_callback("POST", url, data=form) for _ in range(times)]


async def payment_page(request: web.Request) -> web.Response:
    return web.Response(text="Kapital Bank hosted payment page (simulated): POST "
                             "/sim/acquiring/pay plays the customer", content_type="text/plain")


def add_routes(app: web.Application) -> None:
    app.router.add_post(EXEC, exec_endpoint)
    app.router.add_get(BASE + "/index.jsp", payment_page)

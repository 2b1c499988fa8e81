"""Our client to Kapital Bank's TKKPG gateway (shared/seeds/kapital-bank-bitrix.txt):
XML over HTTP, UTF-8 without a BOM, `Content-Type: text/xml; charset=utf-8` (the seed's
"common error"). CreateOrder (amount in minor units, KZT = ISO 4217 398) answers OrderID,
SessionID and the page's URL; the customer pays at URL?ORDERID=..&SESSIONID=..
GetOrderStatus APPROVED is the only thing we credit on. Money back: Reverse for the whole
amount on the day it was paid (Asia/Almaty), Refund otherwise."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import aiohttp

from mpp_server.acquirers.base import (
    AcquirerNoAnswer,
    AcquirerRefused,
    Caller,
    Order,
    OrderRef,
    Provider,
    Status,
    Verdict,
)
from mpp_server.journal import Journal

CURRENCY_KZT = "398"
CONTENT_TYPE = "text/xml; charset=utf-8"
STATUS_OK = "00"
DESCRIPTION = "Пополнение кошелька {topup_id}"
_DECLINED = ("DECLINED", "CANCELED", "CANCELLED")


def _element(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def _request(operation: str) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("TKKPG")
    request = _element(root, "Request")
    _element(request, "Operation", operation)
    _element(request, "Language", "RU")
    return root, request


def encode(root: ET.Element) -> bytes:
    """UTF-8, declared, no byte order mark (ElementTree never writes one)."""
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    assert not body.startswith(b"\xef\xbb\xbf")
    return body


def decode(raw: bytes) -> ET.Element:
    """The gateway's answer; a DOCTYPE (entity expansion) or anything unreadable is no
    answer."""
    if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
        raise AcquirerNoAnswer("BAD_RESPONSE", "a DOCTYPE in the answer")
    try:
        root = ET.fromstring(raw.removeprefix(b"\xef\xbb\xbf"))
    except ET.ParseError as exc:
        raise AcquirerNoAnswer("BAD_RESPONSE", str(exc)[:200]) from exc
    if root.tag != "TKKPG" or root.find("Response") is None:
        raise AcquirerNoAnswer("BAD_RESPONSE", "not a TKKPG Response")
    return root


def _text(root: ET.Element, path: str) -> str | None:
    found = root.find(path)
    return found.text.strip() if found is not None and found.text else None


class Kapital:
    provider = Provider.KAPITAL

    def __init__(self, session: aiohttp.ClientSession, base_url: str, merchant_id: str,
                 timeout_ms: int, journal: Journal) -> None:
        self._http = Caller(session, self.provider, timeout_ms, journal)
        self._url = base_url.rstrip("/") + "/api/order/"
        self._merchant = merchant_id

    async def _send(self, operation: str, root: ET.Element) -> ET.Element:
        async with self._http.call(operation, "POST", self._url, data=encode(root),
                                   headers={"Content-Type": CONTENT_TYPE}) as (status, raw):
            if status >= 400:
                raise AcquirerRefused(f"HTTP_{status}")
            answer = decode(raw)
        code = _text(answer, "Response/Status")
        if code != STATUS_OK:
            raise AcquirerRefused(f"Status {code}")
        return answer

    def _order(self, request: ET.Element, order: OrderRef) -> None:
        element = _element(request, "Order")
        _element(element, "Merchant", self._merchant)
        _element(element, "OrderID", order.order_id)
        _element(request, "SessionID", order.session_id or "")

    async def create_order(self, topup_id: str, amount_tiyn: int, callback_url: str) -> Order:
        root, request = _request("CreateOrder")
        order = _element(request, "Order")
        for tag, text in (("OrderType", "Purchase"), ("Merchant", self._merchant),
                          ("Amount", str(amount_tiyn)), ("Currency", CURRENCY_KZT),
                          ("Description", DESCRIPTION.format(topup_id=topup_id)),
                          ("ApproveURL", f"{callback_url}?result=approve"),
                          ("CancelURL", f"{callback_url}?result=cancel"),
                          ("DeclineURL", f"{callback_url}?result=decline")):
            _element(order, tag, text)
        answer = await self._send("create", root)
        order_id = _text(answer, "Response/Order/OrderID")
        session_id = _text(answer, "Response/Order/SessionID")
        page = _text(answer, "Response/Order/URL")
        if not order_id or not session_id or not page:
            raise AcquirerNoAnswer("BAD_RESPONSE", "CreateOrder answered no OrderID, "
                                                   "SessionID or URL")
        return Order(order_id, session_id,
                     f"{page}?{urlencode({'ORDERID': order_id, 'SESSIONID': session_id})}")

    async def status(self, order: OrderRef) -> Status:
        root, request = _request("GetOrderStatus")
        self._order(request, order)
        try:
            answer = await self._send("status", root)
        except AcquirerRefused as exc:
            # A status the gateway will not give is no verdict on the payment.
            raise AcquirerNoAnswer("STATUS_REFUSED", exc.reason) from exc
        if _text(answer, "Response/Order/OrderID") != order.order_id:
            raise AcquirerNoAnswer("BAD_RESPONSE", "GetOrderStatus answered another order")
        order_status = (_text(answer, "Response/Order/OrderStatus") or "").upper()
        if order_status == "APPROVED":
            amount = _text(answer, "Response/Order/Amount")
            # The gateway charges the amount we ordered; when it reports one, it must agree.
            paid = (int(amount) if amount and amount.isdigit() else -1) if amount else \
                order.amount_tiyn
            return Status(Verdict.PAID, paid_tiyn=paid)
        if order_status in _DECLINED:
            return Status(Verdict.DECLINED, reason=order_status)
        if order_status == "EXPIRED":
            return Status(Verdict.EXPIRED)
        return Status(Verdict.WAITING)

    async def refund(self, order: OrderRef, refund_id: str, amount_tiyn: int) -> str:
        full_same_day = order.credited_today and amount_tiyn == order.amount_tiyn
        operation = "Reverse" if full_same_day else "Refund"
        root, request = _request(operation)
        self._order(request, order)
        if operation == "Reverse":
            _element(request, "Description", f"wallet refund {refund_id}")
        else:
            refund = _element(request, "Refund")
            _element(refund, "Amount", str(amount_tiyn))
            _element(refund, "Currency", CURRENCY_KZT)
        await self._send(operation.lower(), root)
        return operation

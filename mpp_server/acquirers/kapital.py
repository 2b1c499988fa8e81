"""Our client to Kapital Bank's TWPG gateway (TKKPG XML; public clients
arzuhuseyn/Kapital-Bank-Payment-Gateway and ampeco/omnipay-kapitalbank read, docs/topups.md
says where they differ): one XML endpoint, KAPITAL_EXEC_URL (`https://…:5443/Exec`),
behind mutual TLS with the client certificate the bank issued (KAPITAL_CERT_FILE,
KAPITAL_KEY_FILE). UTF-8 without a byte order mark, `Content-Type: text/xml;
charset=utf-8`; an answer with a DOCTYPE is refused (no entity expansion).

- CreateOrder (Amount in minor units, Currency KAPITAL_CURRENCY: the bank documents 944,
  AZN) answers OrderID, SessionID and the page's URL; the customer pays at
  URL?ORDERID=..&SESSIONID=..; the browser comes back to Approve/Decline/CancelURL with a
  form field `xmlmsg` holding `<Message>` (OrderID, SessionID, OrderStatus): never
  trusted, it only names the order to check.
- GetOrderStatus (OrderStatus APPROVED is paid) and GetOrderInformation (what was paid,
  in which currency, what was refunded): what we credit on.
- Money back: Reverse, the whole amount on the bank's day of the payment (Baku, UTC+4);
  a refused Reverse falls back to Refund (Amount, Currency). Neither takes a reference of
  ours: after an unanswered one, GetOrderInformation's refunded amount tells.
- Status "00" is done; "96" a system error (asked again, never a refusal); "30" a
  message the gateway could not read and "10" no access (ours to fix: asked again and
  alerted); any other Status a refusal.
"""

from __future__ import annotations

import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from urllib.parse import urlencode

import aiohttp

from mpp_server.acquirers.base import (
    AcquirerNoAnswer,
    AcquirerRefused,
    CallbackClaim,
    Caller,
    Order,
    OrderRef,
    OrderRequest,
    Provider,
    RefundRef,
    Status,
    Verdict,
)
from mpp_server.journal import Journal

CONTENT_TYPE = "text/xml; charset=utf-8"
STATUS_OK = "00"
# Statuses that say nothing about the order: asked again (and alerted on).
NOT_AN_ANSWER = {"96": "SYSTEM_ERROR", "30": "MESSAGE_UNREADABLE", "10": "NO_ACCESS"}
DESCRIPTION = "Пополнение кошелька {topup_id}"
# ISO 4217 numeric to letters: the currency a status names is compared in letters.
CURRENCIES = {"398": "KZT", "944": "AZN", "840": "USD", "978": "EUR", "643": "RUB"}
_WAITING = frozenset({"CREATED", "ON-PAYMENT", "ON-LOCK", "PREAUTH-APPROVED"})
_DECLINED = frozenset({"DECLINED", "CANCELED", "CANCELLED"})
_GIVEN_BACK = frozenset({"REVERSED", "REFUNDED"})
_REVERSAL_OK = frozenset({"000", "001"})


def _element(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def request_xml(operation: str) -> tuple[ET.Element, ET.Element]:
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


def parse_xml(raw: bytes | str) -> ET.Element | None:
    """A document from the gateway or the browser; None when it is not one, or carries
    a DOCTYPE (entity expansion)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        return None
    try:
        return ET.fromstring(data.removeprefix(b"\xef\xbb\xbf"))
    except ET.ParseError:
        return None


def _text(root: ET.Element, path: str) -> str | None:
    found = root.find(path)
    return found.text.strip() if found is not None and found.text else None


def _first(root: ET.Element, *tags: str) -> str | None:
    """The first of these elements anywhere below (GetOrderInformation nests its row)."""
    wanted = {t.lower() for t in tags}
    found: Iterator[ET.Element] = (e for e in root.iter() if e.tag.lower() in wanted)
    for element in found:
        if element.text and element.text.strip():
            return element.text.strip()
    return None


def _response(answer: ET.Element) -> ET.Element:
    response = answer.find("Response")
    return answer if response is None else response


def _minor(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


class Kapital:
    provider = Provider.KAPITAL
    min_refund_tiyn = 1

    def __init__(self, session: aiohttp.ClientSession, exec_url: str, merchant_id: str,
                 currency: str, tls: ssl.SSLContext | None, timeout_ms: int,
                 journal: Journal) -> None:
        self._http = Caller(session, self.provider, timeout_ms, journal)
        self._url = exec_url
        self._merchant = merchant_id
        self._currency = currency
        # In letters: a top-up of the tenge wallet charged in another is refused.
        self.currency = CURRENCIES.get(currency, f"ISO{currency}")
        self._tls = tls

    async def _send(self, operation: str, root: ET.Element) -> ET.Element:
        extra = {} if self._tls is None else {"ssl": self._tls}
        async with self._http.call(operation, "POST", self._url, data=encode(root),
                                   headers={"Content-Type": CONTENT_TYPE},
                                   **extra) as (status, raw):
            answer = parse_xml(raw)
        if status != 200 or answer is None or answer.tag != "TKKPG" \
                or answer.find("Response") is None:
            raise AcquirerNoAnswer("BAD_RESPONSE", f"HTTP {status}: {raw[:120]!r}")
        code = _text(answer, "Response/Status") or ""
        if code in NOT_AN_ANSWER:
            raise AcquirerNoAnswer(f"STATUS_{code}", NOT_AN_ANSWER[code])
        if code != STATUS_OK:
            raise AcquirerRefused(f"Status {code}")
        return answer

    def _order(self, request: ET.Element, order: OrderRef) -> None:
        element = _element(request, "Order")
        _element(element, "Merchant", self._merchant)
        _element(element, "OrderID", order.order_id)
        _element(request, "SessionID", order.session_id or "")

    async def create_order(self, order: OrderRequest) -> Order:
        root, request = request_xml("CreateOrder")
        element = _element(request, "Order")
        url = order.callback_url
        for tag, text in (("OrderType", "Purchase"), ("Merchant", self._merchant),
                          ("Amount", str(order.amount_tiyn)), ("Currency", self._currency),
                          ("Description", DESCRIPTION.format(topup_id=order.topup_id)),
                          ("ApproveURL", f"{url}?result=approve"),
                          ("CancelURL", f"{url}?result=cancel"),
                          ("DeclineURL", f"{url}?result=decline")):
            _element(element, tag, text)
        answer = await self._send("create", root)
        order_id = _text(answer, "Response/Order/OrderID")
        session_id = _text(answer, "Response/Order/SessionID")
        page = _text(answer, "Response/Order/URL")
        if not order_id or not session_id or not page:
            raise AcquirerNoAnswer("BAD_RESPONSE", "CreateOrder answered no OrderID, "
                                                   "SessionID or URL")
        return Order(order_id, session_id,
                     f"{page}?{urlencode({'ORDERID': order_id, 'SESSIONID': session_id})}")

    async def _ask(self, operation: str, order: OrderRef) -> ET.Element:
        root, request = request_xml(operation)
        self._order(request, order)
        try:
            answer = await self._send("status", root)
        except AcquirerRefused as exc:
            # A status the gateway will not give is no verdict on the payment.
            raise AcquirerNoAnswer("STATUS_REFUSED", exc.reason) from exc
        named = _first(_response(answer), "OrderID", "id")
        if named != order.order_id:
            raise AcquirerNoAnswer("BAD_RESPONSE", f"{operation} answered another order")
        return answer

    async def status(self, order: OrderRef) -> Status:
        answer = await self._ask("GetOrderStatus", order)
        state = (_text(answer, "Response/Order/OrderStatus") or "").upper()
        if state in _WAITING:
            return Status(Verdict.WAITING)
        if state in _DECLINED:
            return Status(Verdict.DECLINED, reason=state)
        if state == "EXPIRED":
            return Status(Verdict.EXPIRED)
        if state != "APPROVED" and state not in _GIVEN_BACK:
            return Status(Verdict.WAITING, reason=f"unknown OrderStatus {state[:40]}")
        return read_information(await self._ask("GetOrderInformation", order), state)

    async def refund(self, order: OrderRef, refund: RefundRef) -> str:
        if order.credited_today and refund.amount_tiyn == order.amount_tiyn:
            try:
                return await self._money_back("Reverse", order, refund)
            except AcquirerRefused:
                pass  # no longer reversible (the bank's day is over): a Refund
        return await self._money_back("Refund", order, refund)

    async def _money_back(self, operation: str, order: OrderRef, refund: RefundRef) -> str:
        root, request = request_xml(operation)
        self._order(request, order)
        if operation == "Reverse":
            _element(request, "Description", f"wallet refund {refund.refund_id}")
        else:
            element = _element(request, "Refund")
            _element(element, "Amount", str(refund.amount_tiyn))
            _element(element, "Currency", self._currency)
        answer = await self._send(operation.lower(), root)
        code = _first(_response(answer), "RespCode")
        if code is not None and code not in _REVERSAL_OK:
            raise AcquirerRefused(f"{operation} RespCode {code}")
        return operation


def read_information(answer: ET.Element, state: str) -> Status:
    """GetOrderInformation's row: the amount paid, its currency, the amount refunded."""
    paid = _minor(_first(answer, "Amount"))
    numeric = _first(answer, "Currency") or ""
    refunded = paid if state == "REVERSED" else (_minor(_first(answer, "RefundAmount")) or 0)
    currency = CURRENCIES.get(numeric, f"ISO{numeric}")
    if state == "APPROVED":
        return Status(Verdict.PAID, paid_tiyn=paid, paid_currency=currency,
                      refunded_tiyn=refunded)
    # Paid and given back by someone (the bank's cabinet): never a credit.
    return Status(Verdict.DECLINED, paid_tiyn=paid, paid_currency=currency,
                  refunded_tiyn=refunded, reason=f"{state} at Kapital")


def callback_claim(xmlmsg: str) -> CallbackClaim | None:
    """The browser's return: `xmlmsg` = <Message> with OrderID, SessionID, OrderStatus."""
    message = parse_xml(xmlmsg)
    if message is None or message.tag != "Message":
        return None
    order_id = _text(message, "OrderID")
    if not order_id or not order_id.isdigit() or len(order_id) > 32:
        return None
    return CallbackClaim(order_id, None, (_text(message, "OrderStatus") or "") == "APPROVED")

"""Our client to Kaspi Pay's QR API for partners (public clients RomanBronevik/kaspi-qr
and thedakeen/kaspi-api-wrapper read; docs/topups.md): KASPI_ECOM_BASE_URL is the API's
base (`https://qrapi-cert-ip.kaspi.kz/r1/v01`: r1 with an `Api-Key` header, r2/r3 with the
client certificate Kaspi issued), every call carries a fresh `X-Request-ID`.

- A payment is made from a *device* registered for a trade point (device/register:
  DeviceId, TradePointId -> DeviceToken), once, kept (domain/acquirer_devices.py).
- qr/create-link (DeviceToken, Amount in whole tenge, ExternalId) -> PaymentLink,
  PaymentId, ExpireDate (the session's end): the page the app opens.
- payment/status/{PaymentId}: QrTokenCreated, Wait (not yet), Processed (paid), Error.
- No callback: the status is polled. No refund to the card through this scheme.
- Every answer is HTTP 200 with {StatusCode, Message, Data}: StatusCode 0 is success,
  anything else an error (-1501/-1502: the device is unknown or deactivated; -999: the
  service is unavailable).
"""

from __future__ import annotations

import ssl
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import aiohttp

from mpp_server.acquirers.base import (
    AcquirerNoAnswer,
    AcquirerRefused,
    Caller,
    DeviceTokens,
    Order,
    OrderRef,
    OrderRequest,
    Provider,
    RefundRef,
    Status,
    Verdict,
    amount_or_none,
    json_object,
)
from mpp_server.journal import Journal
from mpp_server.money import TIYN_PER_TENGE, is_whole_tenge

STATUS_OK = 0
# StatusCodes that say nothing about the payment: asked again (and alerted on).
SERVICE_UNAVAILABLE, NO_CERTIFICATE = -999, -10000
DEVICE_GONE = frozenset({-1501, -1502})  # not found, deactivated: register a new one
_WAITING = frozenset({"QrTokenCreated", "Wait"})
# Kaspi's times without an offset are Kazakhstan's (UTC+5 since 2024-03-01).
KAZAKHSTAN = timezone(timedelta(hours=5))


class DeviceGone(AcquirerNoAnswer):
    """Kaspi no longer knows our device: the next payment registers a new one."""


class KaspiEcom:
    provider = Provider.KASPI_ECOM
    currency = "KZT"  # Kaspi takes tenge only
    min_refund_tiyn = 0  # the contract offers no money back to the card through Kaspi

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str,
                 tls: ssl.SSLContext | None, trade_point_id: str, devices: DeviceTokens,
                 timeout_ms: int, journal: Journal) -> None:
        self._http = Caller(session, self.provider, timeout_ms, journal)
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._tls = tls
        self._trade_point = trade_point_id
        self._devices = devices

    async def _call(self, operation: str, method: str, path: str,
                    body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call: its Data on StatusCode 0; AcquirerRefused for an error about the
        request, AcquirerNoAnswer for anything that says nothing about it."""
        headers = {"X-Request-ID": uuid.uuid4().hex, "Content-Type": "application/json"}
        if self._api_key:
            headers["Api-Key"] = self._api_key
        extra: dict[str, Any] = {} if self._tls is None else {"ssl": self._tls}
        async with self._http.call(operation, method, f"{self._base}{path}", json=body,
                                   headers=headers, **extra) as (status, raw):
            if status != 200:
                # Kaspi answers its errors with 200: anything else is the way there
                # (a proxy, our Api-Key or certificate refused).
                raise AcquirerNoAnswer(f"HTTP_{status}", raw[:200].decode(errors="replace"))
            answer = json_object(raw)
        code, message = answer.get("StatusCode"), str(answer.get("Message") or "")[:200]
        if code == STATUS_OK:
            data = answer.get("Data")
            return data if isinstance(data, dict) else {}
        if not isinstance(code, int) or code in (SERVICE_UNAVAILABLE, NO_CERTIFICATE):
            raise AcquirerNoAnswer(f"STATUS_{code}"[:40], message)
        if code in DEVICE_GONE:
            raise DeviceGone(f"STATUS_{code}", message)
        raise AcquirerRefused(f"{code}: {message}")

    async def register_device(self, device_id: str) -> str:
        try:
            data = await self._call("device", "POST", "/device/register", {
                "DeviceId": device_id, "TradePointId": _trade_point(self._trade_point)})
        except AcquirerRefused as exc:
            # Kaspi keeps a DeviceId for ever (-1503 if ours had been registered by an
            # attempt whose answer was lost): the next attempt registers a new one.
            raise AcquirerNoAnswer("DEVICE_REFUSED", exc.reason) from exc
        token = data.get("DeviceToken")
        if not isinstance(token, str) or not token:
            raise AcquirerNoAnswer("BAD_RESPONSE", "device/register answered no DeviceToken")
        return token

    async def create_order(self, order: OrderRequest) -> Order:
        assert is_whole_tenge(order.amount_tiyn), "Kaspi's links take whole tenge"
        # A try after one left unanswered gets its own ExternalId: Kaspi may refuse the
        # first one again as a duplicate, and the lost try's link was never handed out.
        external_id = order.gateway_ref or order.topup_id
        if order.attempt > 1:
            external_id = f"{external_id}.{order.attempt}"
        if not self._trade_point:
            raise AcquirerNoAnswer("NOT_CONFIGURED", "KASPI_ECOM_TRADEPOINT_ID is not set")
        token = await self._devices.token(self.register_device)
        try:
            data = await self._call("create", "POST", "/qr/create-link", {
                "DeviceToken": token, "Amount": order.amount_tiyn // TIYN_PER_TENGE,
                "ExternalId": external_id})
        except DeviceGone:
            await self._devices.lost(token)
            raise
        payment_id, link = data.get("PaymentId"), data.get("PaymentLink")
        if not isinstance(payment_id, int | str) or not isinstance(link, str) or not link:
            raise AcquirerNoAnswer("BAD_RESPONSE", "qr/create-link answered no PaymentId or "
                                                   "PaymentLink")
        return Order(str(payment_id), None, link, session_end=_when(data.get("ExpireDate")))

    async def status(self, order: OrderRef) -> Status:
        try:
            data = await self._call("status", "GET",
                                    f"/payment/status/{quote(order.order_id, safe='')}")
        except AcquirerRefused as exc:
            # -1601 "purchase not found" for a PaymentId Kaspi gave us: no verdict.
            raise AcquirerNoAnswer("STATUS_REFUSED", exc.reason) from exc
        return read_status(data, order.amount_tiyn)

    async def refund(self, order: OrderRef, refund: RefundRef) -> str:
        raise AcquirerRefused("REFUND_NOT_SUPPORTED")


def read_status(data: dict[str, Any], amount_tiyn: int) -> Status:
    """payment/status's Data: Status, and (newer answers) the Amount paid."""
    state = data.get("Status")
    if state == "Processed":
        # The link was made for the order's amount in tenge, the only currency Kaspi
        # takes; an Amount in the answer, when there is one, must agree with it.
        paid = amount_or_none(data["Amount"]) if "Amount" in data else amount_tiyn
        return Status(Verdict.PAID, paid_tiyn=paid, paid_currency="KZT",
                      transaction_id=str(data.get("TransactionId") or "") or None)
    if state == "Error":
        return Status(Verdict.DECLINED, reason="Error")
    if state in _WAITING:
        return Status(Verdict.WAITING)
    return Status(Verdict.WAITING, reason=f"unknown Status {str(state)[:40]}")


def _trade_point(value: str) -> int | str:
    """TradePointId as Kaspi's examples send it: a number."""
    return int(value) if value.isdigit() else value


def _when(value: object) -> datetime | None:
    """ExpireDate: ISO 8601; without an offset it is Kazakhstan's time."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=KAZAKHSTAN)

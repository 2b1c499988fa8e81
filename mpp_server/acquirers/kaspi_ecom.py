"""Our client to the Kaspi e-commerce API (shared/seeds/kaspi-pay-ecommerce-bitrix.txt):
a static bearer token, `payments/create` with `externalId` (our topupId) and
`callbackUrl`, `GET payments/{id}` (COMPLETED is the only thing we credit on). Amounts
are whole tenge. The contract offers no money back to the card through this channel."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

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
    amount_or_none,
    json_object,
)
from mpp_server.journal import Journal
from mpp_server.money import TIYN_PER_TENGE, is_whole_tenge

API = "/api/v1/payments"
DESCRIPTION = "Пополнение кошелька {topup_id}"


class KaspiEcom:
    provider = Provider.KASPI_ECOM

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str,
                 timeout_ms: int, journal: Journal) -> None:
        self._http = Caller(session, self.provider, timeout_ms, journal)
        self._base = base_url.rstrip("/") + API
        self._headers = {"Authorization": f"Bearer {token}"}

    async def create_order(self, topup_id: str, amount_tiyn: int, callback_url: str) -> Order:
        assert is_whole_tenge(amount_tiyn), "Kaspi e-commerce takes whole tenge"
        payload = {
            "device": {"platformType": "WEB",
                       "id": hashlib.md5(topup_id.encode(), usedforsecurity=False).hexdigest()},
            "amount": {"value": amount_tiyn // TIYN_PER_TENGE, "currency": "KZT"},
            "externalId": topup_id, "description": DESCRIPTION.format(topup_id=topup_id),
            "paymentType": "ECOM", "callbackUrl": callback_url}
        async with self._http.call("create", "POST", f"{self._base}/create", json=payload,
                                   headers=self._headers) as (status, raw):
            answer = json_object(raw) if raw else {}
        if status >= 400:
            raise AcquirerRefused(_reason(answer, status))
        data = answer.get("data") or {}
        payment_id, link = data.get("paymentId"), data.get("paymentLink")
        if not isinstance(payment_id, str | int) or not isinstance(link, str) or not link:
            raise AcquirerNoAnswer("BAD_RESPONSE", "payments/create answered no paymentId "
                                                   "or paymentLink")
        return Order(str(payment_id), None, link)

    async def status(self, order: OrderRef) -> Status:
        async with self._http.call("status", "GET",
                                   f"{self._base}/{quote(order.order_id, safe='')}",
                                   headers=self._headers) as (status, raw):
            answer = json_object(raw) if raw else {}
        if status == 404:
            return Status(Verdict.WAITING)
        if status >= 400:
            raise AcquirerNoAnswer(f"HTTP_{status}", _reason(answer, status))
        data = answer.get("data") or {}
        if str(data.get("paymentId")) != order.order_id:
            raise AcquirerNoAnswer("BAD_RESPONSE", "payments/{id} answered another payment")
        state = data.get("status")
        if state == "COMPLETED":
            amount = data.get("amount") or {}
            paid = amount_or_none(amount.get("value")) if amount.get("currency") == "KZT" \
                else None
            return Status(Verdict.PAID, paid_tiyn=paid)
        if state == "FAILED":
            return Status(Verdict.DECLINED, reason=str(data.get("reason") or "FAILED")[:256])
        if state == "EXPIRED":
            return Status(Verdict.EXPIRED)
        return Status(Verdict.WAITING)

    async def refund(self, order: OrderRef, refund_id: str, amount_tiyn: int) -> str:
        raise AcquirerRefused("REFUND_NOT_SUPPORTED")


def _reason(answer: dict[str, Any], status: int) -> str:
    return str(answer.get("message") or answer.get("code") or f"HTTP_{status}")[:256]

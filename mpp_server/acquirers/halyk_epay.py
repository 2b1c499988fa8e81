"""Our client to Halyk ePay (shared/seeds/halyk-epay-bitrix.txt): an OAuth
client-credentials token (cached until shortly before it expires, fetched again when an
API call answers 401, then the call retried once), `invoices/create` with `postLink`,
`check-transaction` (the only thing we credit on: CHARGED), `refund`."""

from __future__ import annotations

import asyncio
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
    json_with_amount,
)
from mpp_server.journal import Journal

API = "/api/public/v1"
SCOPE = "webapi usermanagement email_send verification statement statistics payment"
# A token is used until this long before Halyk said it expires.
TOKEN_MARGIN_S = 30.0
DESCRIPTION = "Пополнение кошелька {topup_id}"


class HalykEpay:
    provider = Provider.HALYK_EPAY

    def __init__(self, session: aiohttp.ClientSession, base_url: str, client_id: str,
                 client_secret: str, terminal: str, timeout_ms: int, journal: Journal) -> None:
        self._http = Caller(session, self.provider, timeout_ms, journal)
        self._base = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._terminal = terminal
        self._token: str | None = None
        self._token_good_until = 0.0
        self._token_lock = asyncio.Lock()
        self.tokens_fetched = 0

    async def _fetch_token(self, stale: str | None) -> str:
        async with self._token_lock:
            now = asyncio.get_running_loop().time()
            if self._token is not None and self._token != stale and now < self._token_good_until:
                return self._token  # another caller refreshed it meanwhile
            form = {"grant_type": "client_credentials", "client_id": self._client_id,
                    "client_secret": self._client_secret, "scope": SCOPE,
                    "terminal": self._terminal}
            async with self._http.call("token", "POST", f"{self._base}{API}/auth/token",
                                       data=form) as (status, raw):
                answer = json_object(raw)
                token = answer.get("access_token")
                expires_in = answer.get("expires_in")
                if status != 200 or not isinstance(token, str) or not token:
                    # Wrong credentials are not a customer's problem: the call is retried
                    # (and alerted on) like an acquirer that does not answer.
                    raise AcquirerNoAnswer(f"TOKEN_HTTP_{status}", raw[:200].decode(
                        errors="replace"))
            lifetime_s = float(expires_in) if isinstance(expires_in, int) else 300.0
            self._token = token
            self._token_good_until = now + max(0.0, lifetime_s - TOKEN_MARGIN_S)
            self.tokens_fetched += 1
            return token

    async def _token_now(self) -> str:
        if self._token is not None and (asyncio.get_running_loop().time()
                                        < self._token_good_until):
            return self._token
        return await self._fetch_token(None)

    async def _api(self, operation: str, method: str, path: str,
                   body: str | None = None) -> tuple[int, dict[str, Any]]:
        """An API call with the cached token; on 401 a new token and one more try."""
        token = await self._token_now()
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {token}"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            async with self._http.call(operation, method, f"{self._base}{API}{path}",
                                       data=body, headers=headers) as (status, raw):
                if status == 401 and attempt == 2:
                    # A fresh token refused too: our credentials, not the customer's
                    # order; retried (and alerted on) like no answer.
                    raise AcquirerNoAnswer("HTTP_401", "refused a fresh token")
                if status == 401:
                    stale = token
                else:
                    return status, json_object(raw) if raw else {}
            token = await self._fetch_token(stale)
        raise AssertionError("unreachable")  # pragma: no cover

    async def create_order(self, topup_id: str, amount_tiyn: int, callback_url: str) -> Order:
        body = json_with_amount({
            "currency": "KZT", "terminal": self._terminal, "invoiceId": topup_id,
            "description": DESCRIPTION.format(topup_id=topup_id), "language": "rus",
            "postLink": callback_url, "failurePostLink": callback_url}, amount_tiyn)
        status, answer = await self._api("create", "POST", "/invoices/create", body)
        invoice_id = answer.get("id")
        if status >= 400:
            raise AcquirerRefused(str(answer.get("code") or f"HTTP_{status}"))
        if not isinstance(invoice_id, str | int) or not str(invoice_id):
            raise AcquirerNoAnswer("BAD_RESPONSE", "invoices/create answered no id")
        return Order(str(invoice_id), None, f"{self._base}/pay/invoices/{invoice_id}")

    async def status(self, order: OrderRef) -> Status:
        status, answer = await self._api(
            "status", "GET", f"/check-transaction?invoiceId={quote(order.topup_id, safe='')}")
        if status == 404:
            return Status(Verdict.WAITING)
        if status >= 400:
            raise AcquirerNoAnswer(f"HTTP_{status}", str(answer)[:200])
        tx_status = answer.get("status")
        if answer.get("invoiceId") != order.topup_id:
            raise AcquirerNoAnswer("BAD_RESPONSE", "check-transaction answered another invoice")
        if tx_status == "CHARGED":
            return Status(Verdict.PAID, paid_tiyn=amount_or_none(answer.get("amount")))
        if tx_status in ("DECLINED", "CANCELLED"):
            reason = answer.get("reason") or tx_status
            return Status(Verdict.DECLINED, reason=f"{tx_status}: {reason}"[:256])
        return Status(Verdict.WAITING)

    async def refund(self, order: OrderRef, refund_id: str, amount_tiyn: int) -> str:
        body = json_with_amount({"invoice_id": order.order_id,
                                 "reason": f"wallet refund {refund_id}",
                                 "externalId": refund_id}, amount_tiyn)
        status, answer = await self._api("refund", "POST", "/refund", body)
        if status >= 400:
            raise AcquirerRefused(str(answer.get("code") or answer.get("message")
                                      or f"HTTP_{status}"))
        return "refund"


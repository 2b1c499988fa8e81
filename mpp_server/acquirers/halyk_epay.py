"""Our client to Halyk ePay, after Halyk's own documentation (epayment.kz/docs: "Payment
page" platezhnaya-stranica, "Payment widget" platezhnyi-vidzhet, "Transaction status"
check-status-payment, "Refund/Partial refund" vozvrat-chastichnyi-vozvrat).

- Tokens come from a separate OAuth host (HALYK_EPAY_OAUTH_URL), form-encoded: a
  client-credentials token for the API (cached until shortly before it expires, fetched
  again on a 401 and the call repeated once), and for each order a *payment token bound
  to one invoice* (invoiceID, amount, currency, postLink, failurePostLink, secret_hash,
  terminal). There is no "create invoice" call: the customer pays on Halyk's form that
  Halyk's script (HALYK_EPAY_WIDGET_URL) opens from a page of ours with that token
  (http/acquiring_listener.py renders it from the order's page_data).
- invoiceID: 6 to 15 digits, unique, unique in its last 6 digits (topups.gateway_ref).
- Status: GET {API}/check-status/payment/transaction/{invoiceID}: resultCode "100" with
  transaction.statusName (CHARGE is paid; AUTH only held), "102" not found yet.
- Refund: POST {API}/operation/{transaction id}/refund?amount=&externalID= (the
  transaction id from the status, not the invoice id; at least 10 tenge); 200 is done,
  400 {code, message} a refusal.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

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
    amount_or_none,
    json_object,
    json_with_amount,
)
from mpp_server.journal import Journal
from mpp_server.money import format_amount, parse_amount

SCOPE = "webapi usermanagement email_send verification statement statistics payment"
# A service token is used until this long before Halyk said it expires.
TOKEN_MARGIN_S = 30.0
DESCRIPTION = "Пополнение кошелька {topup_id}"
CURRENCY = "KZT"
RESULT_FOUND, RESULT_REJECTED, RESULT_NOT_FOUND, RESULT_IN_PROGRESS = "100", "101", "102", "107"
# transaction.statusName (the documentation's and Sakhnovkrg/Epay's vocabulary).
_DECLINED = frozenset({"REJECT", "FAILED", "CANCEL", "CANCEL_OLD"})


def secret_hash(client_secret: str, invoice_id: str) -> str:
    """The postLink's secret_hash we give Halyk with the payment token: an HMAC of the
    invoice under our client secret, so a postLink that does not carry it is forged, told
    apart without a database read."""
    return hmac.new(client_secret.encode(), f"postlink:{invoice_id}".encode(),
                    hashlib.sha256).hexdigest()[:32]


class HalykEpay:
    provider = Provider.HALYK_EPAY
    currency = CURRENCY
    min_refund_tiyn = 1000  # "the minimum refund amount is 10 tenge"

    def __init__(self, session: aiohttp.ClientSession, oauth_url: str, api_url: str,
                 widget_url: str, client_id: str, client_secret: str, terminal: str,
                 timeout_ms: int, journal: Journal) -> None:
        self._http = Caller(session, self.provider, timeout_ms, journal)
        self._oauth_url = oauth_url
        self._api = api_url.rstrip("/")
        self._widget_url = widget_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._terminal = terminal
        self._token: str | None = None
        self._token_good_until = 0.0
        self._token_lock = asyncio.Lock()

    # ---- tokens (the OAuth host) ------------------------------------------------------

    async def _oauth(self, operation: str, fields: dict[str, str]) -> dict[str, Any]:
        """A token request, form-encoded. Refused credentials are no customer's problem:
        alerted and retried like no answer; a refusal of the order's fields (400 naming
        the invoice) is the acquirer's "no"."""
        form = {"grant_type": "client_credentials", "scope": SCOPE,
                "client_id": self._client_id, "client_secret": self._client_secret,
                "terminal": self._terminal, **fields}
        async with self._http.call(operation, "POST", self._oauth_url, data=form) as (status,
                                                                                      raw):
            answer = json_object(raw) if raw else {}
        token = answer.get("access_token")
        if status == 200 and isinstance(token, str) and token:
            return answer
        reason = str(answer.get("message") or answer.get("error") or answer.get("code")
                     or f"HTTP_{status}")[:200]
        if status == 400 and "invoiceID" in fields:
            raise AcquirerRefused(f"TOKEN_{status}: {reason}")
        raise AcquirerNoAnswer(f"TOKEN_HTTP_{status}", reason)

    async def _service_token(self, stale: str | None) -> str:
        async with self._token_lock:
            now = asyncio.get_running_loop().time()
            if self._token is not None and self._token != stale and now < self._token_good_until:
                return self._token  # another caller refreshed it meanwhile
            answer = await self._oauth("token", {})
            lifetime_s = _seconds(answer.get("expires_in")) or 300.0
            self._token = str(answer["access_token"])
            self._token_good_until = now + max(0.0, lifetime_s - TOKEN_MARGIN_S)
            return self._token

    async def _api_call(self, operation: str, method: str, path: str) -> tuple[int, bytes]:
        """An API call with the cached service token; on 401 a new token, one more try."""
        token = self._token if asyncio.get_running_loop().time() < self._token_good_until \
            else None
        token = token or await self._service_token(None)
        for attempt in (1, 2):
            async with self._http.call(operation, method, f"{self._api}{path}",
                                       headers={"Authorization": f"Bearer {token}"}) as (
                    status, raw):
                if status != 401:
                    return status, raw
                if attempt == 2:
                    # A fresh token refused too: our credentials, not the customer's
                    # order; retried (and alerted on) like no answer.
                    raise AcquirerNoAnswer("HTTP_401", "refused a fresh token")
            token = await self._service_token(token)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- the order: a payment token bound to the invoice -----------------------------

    async def create_order(self, order: OrderRequest) -> Order:
        invoice_id = order.gateway_ref
        assert invoice_id is not None and invoice_id.isdigit() and 6 <= len(invoice_id) <= 15
        amount = format_amount(order.amount_tiyn)
        answer = await self._oauth("create", {
            "invoiceID": invoice_id, "secret_hash": secret_hash(self._client_secret, invoice_id),
            "amount": amount, "currency": CURRENCY, "postLink": order.callback_url,
            "failurePostLink": order.callback_url})
        lifetime_s = _seconds(answer.get("expires_in"))
        session_end = (datetime.now(UTC) + timedelta(seconds=lifetime_s)
                       if lifetime_s else None)
        # What halyk.pay() takes (the widget's payment object); our page adds its own
        # backLink and failureBackLink. Strings only: amounts are written, never floats.
        page = {"invoiceId": invoice_id, "amount": amount, "currency": CURRENCY,
                "terminal": self._terminal, "language": "RUS",
                "description": DESCRIPTION.format(topup_id=order.topup_id),
                "postLink": order.callback_url, "failurePostLink": order.callback_url,
                "auth": {k: str(answer.get(k, "")) for k in
                         ("access_token", "expires_in", "refresh_token", "scope",
                          "token_type")}}
        return Order(invoice_id, None, None, page, session_end)

    # ---- what we credit on: the transaction's status ---------------------------------

    async def status(self, order: OrderRef) -> Status:
        invoice_id = order.gateway_ref or order.order_id
        status, raw = await self._api_call(
            "status", "GET", f"/check-status/payment/transaction/{quote(invoice_id, safe='')}")
        if status != 200:
            raise AcquirerNoAnswer(f"HTTP_{status}", raw[:200].decode(errors="replace"))
        return read_status(json_object(raw), invoice_id)

    # ---- money back ---------------------------------------------------------------------

    async def refund(self, order: OrderRef, refund: RefundRef) -> str:
        transaction_id = order.transaction_id or (await self.status(order)).transaction_id
        if not transaction_id:
            raise AcquirerNoAnswer("NO_TRANSACTION", "the status names no transaction id")
        query = urlencode({"amount": format_amount(refund.amount_tiyn),
                           "externalID": refund.refund_id})
        status, raw = await self._api_call(
            "refund", "POST", f"/operation/{quote(transaction_id, safe='')}/refund?{query}")
        if status == 200:
            return "refund"
        if status == 400:
            answer = json_object(raw) if raw else {}
            raise AcquirerRefused(f"{answer.get('code')}: {answer.get('message') or ''}"
                                  .strip())
        raise AcquirerNoAnswer(f"HTTP_{status}", raw[:200].decode(errors="replace"))

    # ---- our payment page and the postLink ----------------------------------------------

    def payment_page(self, page_data: dict[str, Any], back_url: str) -> str:
        """The page that opens Halyk's payment form for the invoice: Halyk's script and
        the payment object halyk.pay() takes (platezhnaya-stranica), the token bound to
        the invoice in its `auth`. The object is JSON in a script element of its own,
        every `<` escaped, so nothing in it can end the element."""
        fields = {k: v for k, v in page_data.items() if k != "amount"}
        fields["backLink"] = fields["failureBackLink"] = back_url
        payment = json_with_amount(fields, parse_amount(page_data["amount"]))
        for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            payment = payment.replace(char, escaped)
        widget = html.escape(self._widget_url, quote=True)
        return (f'<!doctype html><html lang="ru"><head><meta charset="utf-8">'
                f'<title>Halyk ePay</title><script src="{widget}"></script></head><body>'
                f'<script type="application/json" id="halyk-payment">{payment}</script>'
                '<script>halyk.pay(JSON.parse('
                'document.getElementById("halyk-payment").textContent));</script>'
                '</body></html>')

    # ---- postLink -----------------------------------------------------------------------

    def callback_claim(self, body: dict[str, Any]) -> CallbackClaim | None:
        return postlink_claim(self._client_secret, body)


def postlink_claim(client_secret: str, body: dict[str, Any]) -> CallbackClaim | None:
    """postLink / failurePostLink: {code: ok|error, invoiceId, id, amount, secret_hash,
    ...}; None when its secret_hash is not the one we gave (forged)."""
    invoice_id = body.get("invoiceId")
    if not isinstance(invoice_id, str) or not hmac.compare_digest(
            str(body.get("secret_hash", "")), secret_hash(client_secret, invoice_id)):
        return None
    return CallbackClaim(invoice_id, None, body.get("code") == "ok")


def read_status(answer: dict[str, Any], invoice_id: str) -> Status:
    """check-status's answer (its documented example: tests/fixtures/acquirers)."""
    code = str(answer.get("resultCode"))
    if code in (RESULT_NOT_FOUND, RESULT_IN_PROGRESS):
        return Status(Verdict.WAITING)
    if code == RESULT_REJECTED:
        return Status(Verdict.DECLINED, reason=f"{code}: {answer.get('resultMessage')}"[:256])
    transaction = answer.get("transaction")
    if code != RESULT_FOUND or not isinstance(transaction, dict):
        # 103 error, 104/106/109 the terminal: ours to fix, never the customer's verdict.
        raise AcquirerNoAnswer(f"RESULT_{code}"[:40], str(answer.get("resultMessage"))[:200])
    if str(transaction.get("invoiceID")) != invoice_id:
        raise AcquirerNoAnswer("BAD_RESPONSE", "check-status answered another invoice")
    name = str(transaction.get("statusName"))
    # orgAmount: what was charged; amount: what is left of it after refunds (the
    # documentation's example shows amount 12.22 of orgAmount 22.22: docs/topups.md).
    left = amount_or_none(transaction.get("amount"))
    charged = amount_or_none(transaction.get("orgAmount")) or left
    refunded = charged - left if charged is not None and left is not None else None
    currency = str(transaction.get("currency") or "") or None
    transaction_id = str(transaction.get("id") or "") or None
    if name == "CHARGE":
        return Status(Verdict.PAID, paid_tiyn=charged, paid_currency=currency,
                      transaction_id=transaction_id, refunded_tiyn=refunded)
    if name == "REFUND":
        # Charged and given back, by someone (the merchant's cabinet): never a credit.
        return Status(Verdict.DECLINED, reason="REFUND: refunded at Halyk", paid_tiyn=charged,
                      paid_currency=currency, transaction_id=transaction_id,
                      refunded_tiyn=charged)
    if name in _DECLINED:
        reason = transaction.get("reason") or name
        return Status(Verdict.DECLINED, reason=f"{name}: {reason}"[:256],
                      transaction_id=transaction_id)
    return Status(Verdict.WAITING)  # NEW, AUTH (held only), 3D, FINGERPRINT, ...


def _seconds(value: object) -> float | None:
    """expires_in: a number of seconds, given as a number or a string ("900")."""
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    return seconds if seconds > 0 else None

"""The fake acquirers' shared state: orders, Halyk's tokens, Kaspi's devices, injected
faults, a record of what the MPP sent (so tests can check wire details such as Kapital's
encoding and Halyk's forms), and the callbacks the payment pages send."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from mpp_server.devtools.simulator.faults import drop_connection, pause

log = logging.getLogger("mpp_server.devtools.simulator.acquirers")

MAX_ORDERS = 1_000_000
MAX_RECORDED = 1000
MAX_QUEUED_FAULTS = 10_000
CALLBACK_TIMEOUT_S = 5.0
MAX_DEVICES = 10_000


class OrderState(StrEnum):
    NEW = "NEW"
    PAID = "PAID"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"


class FaultMode(StrEnum):
    TIMEOUT = "timeout"              # no answer: wait delayMs, drop the connection
    HTTP500 = "http500"              # HTTP 500, not processed
    EXPIRED_TOKEN = "expired_token"  # Halyk: every token issued so far expires now
    REFUSE = "refuse"                # a final business refusal, not processed
    # Kapital's Status 96, "system error": not processed, nothing said about the order.
    SYSTEM_ERROR = "system_error"
    # Processed, then answered only after delayMs: an answer that comes after the
    # caller's timeout although the operation applied (a refund done, a status read).
    LATE_ANSWER = "late_answer"
    # Refused as a duplicate of an order that exists (not processed again).
    DUPLICATE = "duplicate"


@dataclass
class Refund:
    operation: str
    amount_tiyn: int
    reference: str


@dataclass
class SimOrder:
    provider: str
    order_id: str  # what the MPP asks the status by (Halyk: the invoiceID)
    reference: str  # our name for it (invoiceID, ExternalId), or the description naming it
    amount_tiyn: int
    currency: str  # as the gateway names it: "KZT", "398"
    payment_url: str  # "" for Halyk: the page is the MPP's own
    callback_urls: dict[str, str]  # by outcome: success, decline (Kapital: cancel too)
    session_id: str | None = None
    state: OrderState = OrderState.NEW
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    paid_at: datetime | None = None
    status_checks: int = 0
    refunds: list[Refund] = field(default_factory=list)
    # Halyk: the payment token bound to the invoice, the postLink's secret_hash, and the
    # transaction made when the customer pays (refunds take its id).
    token: str | None = None
    secret_hash: str | None = None
    transaction_id: str | None = None
    # How many times the MPP placed it (Halyk: payment tokens asked for the invoice).
    placements: int = 1
    # What the card was charged, when the acquirer got it wrong (control: chargedAmount,
    # chargedCurrency).
    charged_override_tiyn: int | None = None
    charged_currency: str | None = None

    @property
    def charged_tiyn(self) -> int:
        return self.amount_tiyn if self.charged_override_tiyn is None \
            else self.charged_override_tiyn

    @property
    def refunded_tiyn(self) -> int:
        return sum(r.amount_tiyn for r in self.refunds)

    @property
    def charged_in(self) -> str:
        return self.charged_currency or self.currency

    def view(self) -> dict[str, Any]:
        return {"provider": self.provider, "providerOrderId": self.order_id,
                "reference": self.reference, "amountTiyn": self.amount_tiyn,
                "status": self.state.value, "statusChecks": self.status_checks,
                "placements": self.placements,
                "refunds": [{"operation": r.operation, "amountTiyn": r.amount_tiyn}
                            for r in self.refunds]}


@dataclass(frozen=True)
class Fault:
    mode: FaultMode
    delay_ms: int = 0


@dataclass
class AcquiringState:
    orders: dict[tuple[str, str], SimOrder] = field(default_factory=dict)
    by_url: dict[str, tuple[str, str]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # Halyk token -> expiry (loop)
    by_token: dict[str, tuple[str, str]] = field(default_factory=dict)  # Halyk payment tokens
    devices: dict[str, str] = field(default_factory=dict)  # Kaspi: DeviceId -> DeviceToken
    # Currencies (ISO 4217 numeric) Kapital's merchant is enabled for.
    kapital_currencies: frozenset[str] = frozenset({"944", "398"})
    # By provider, operation and the order it names (None: any order).
    faults: dict[tuple[str, str, str | None], deque[Fault]] = field(default_factory=dict)
    recorded: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_RECORDED))
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(
        secrets.randbelow(10**6) * 1000 + 1))
    session: aiohttp.ClientSession | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def next_id(self) -> str:
        return str(next(self.ids))

    def add(self, order: SimOrder) -> None:
        if len(self.orders) >= MAX_ORDERS:
            raise web.HTTPServiceUnavailable(text="simulator: too many orders")
        self.orders[(order.provider, order.order_id)] = order
        if order.payment_url:
            self.by_url[order.payment_url] = (order.provider, order.order_id)

    def find(self, provider: str, order_id: str) -> SimOrder | None:
        return self.orders.get((provider, order_id))

    def find_reference(self, provider: str, reference: str) -> SimOrder | None:
        for order in self.orders.values():
            if order.provider == provider and order.reference == reference:
                return order
        return None

    def mentioning(self, provider: str, text: str) -> list[SimOrder]:
        """The orders whose reference (our id, or the description that carries it)
        contains `text`: how many orders one top-up placed."""
        return [o for o in self.orders.values() if o.provider == provider
                and text in o.reference]

    def record(self, provider: str, operation: str, request: web.Request, body: bytes) -> None:
        self.recorded.append({
            "provider": provider, "operation": operation, "path": request.path_qs[:512],
            "contentType": request.headers.get("Content-Type", ""),
            "authorization": request.headers.get("Authorization", "")[:16],
            "apiKey": "Api-Key" in request.headers,
            "requestId": request.headers.get("X-Request-ID", "")[:64],
            "clientCertificate": client_certificate_cn(request),
            "bom": body.startswith(b"\xef\xbb\xbf"), "bodyHead": body[:16].hex(),
            "body": body[:4096].decode("utf-8", errors="replace")})

    def add_fault(self, provider: str, operation: str, fault: Fault, times: int,
                  order_id: str | None = None) -> None:
        queued = sum(len(q) for q in self.faults.values())
        if queued + times > MAX_QUEUED_FAULTS:
            raise web.HTTPBadRequest(text=f"at most {MAX_QUEUED_FAULTS} faults may be queued")
        self.faults.setdefault((provider, operation, order_id), deque()).extend([fault] * times)

    async def fault(self, provider: str, operation: str, request: web.Request,
                    answers: Mapping[FaultMode, web.Response] | None = None,
                    order_id: str | None = None) -> web.StreamResponse | None:
        """Play the next injected fault of this operation (one queued for the order the
        request names first, then one for any order), if any: an answer to send instead
        of the real one (None: go on). `answers`: the acquirer's own words for a refusal,
        a duplicate and a system error (a JSON 400, 409 and 500 unless given)."""
        queue = self.faults.get((provider, operation, order_id)) if order_id else None
        if not queue:
            queue = self.faults.get((provider, operation, None))
        fault = queue.popleft() if queue else None
        if fault is None:
            return None
        own = answers or {}
        if fault.mode is FaultMode.EXPIRED_TOKEN:
            self.tokens.clear()
            return None  # the call goes on and meets the expired token
        if fault.mode is FaultMode.LATE_ANSWER:
            request[LATE_ANSWER_MS] = fault.delay_ms or 30_000  # late_answers() waits
            return None
        if fault.mode in own:
            return own[fault.mode]
        if fault.mode is FaultMode.REFUSE:
            return web.json_response({"code": "REFUSED", "message": "simulated refusal"},
                                     status=400)
        if fault.mode is FaultMode.DUPLICATE:
            return web.json_response({"code": "DUPLICATE", "message": "such an order exists"},
                                     status=409)
        if fault.mode in (FaultMode.HTTP500, FaultMode.SYSTEM_ERROR):
            return web.Response(status=500, text="simulated acquirer failure")
        await pause(request, fault.delay_ms or 30_000, self.stopping)
        drop_connection(request)
        return web.Response(status=500, text="dropped")

    async def send_callback(self, method: str, url: str, **kwargs: Any) -> int | None:
        """One callback to the MPP; its HTTP status, or None when it was not answered."""
        assert self.session is not None
        try:
            async with self.session.request(
                    method, url, timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S),
                    **kwargs) as resp:
                await resp.read()
                return resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("callback not answered", extra={"url": url, "error": str(exc)})
            return None


ACQUIRING: web.AppKey[AcquiringState] = web.AppKey("acquiring", AcquiringState)
LATE_ANSWER_MS = web.RequestKey("late_answer_ms", int)


@web.middleware
async def late_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The LATE_ANSWER fault: the handler has applied the operation; its answer leaves
    only delayMs later (or when the caller hangs up)."""
    response = await handler(request)
    delay_ms = request.get(LATE_ANSWER_MS)
    if delay_ms:
        await pause(request, delay_ms, request.app[ACQUIRING].stopping)
    return response


def client_certificate_cn(request: web.Request) -> str | None:
    """The common name of the caller's client certificate (mutual TLS, verified against
    the test CA by the TLS listener); None without one (the plain listener)."""
    transport = request.transport
    certificate = transport.get_extra_info("peercert") if transport is not None else None
    if not certificate:
        return None
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None

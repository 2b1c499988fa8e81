"""The Kaspi client: scan, checkout, notifyPayment over HTTP (regulation §1.4–1.9, §4).

Every call has a timeout and carries X-Request-ID (new per attempt, ≤ 64),
X-Caller-Name and X-Locale. A call either returns Kaspi's parsed answer (whatever its
resultCode) or raises KaspiNoAnswer: a timeout, a connection error, an HTTP 5xx or a
body that is not a Kaspi answer. Retrying is the caller's decision.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from mpp_server import jsonutil
from mpp_server.journal import Direction, Exchange, Journal, Refs, Started
from mpp_server.kaspi_client.models import (
    LOCALES,
    CheckoutRequest,
    CheckoutResponse,
    NotifyRequest,
    NotifyResponse,
    ScanRequest,
    ScanResponse,
)
from mpp_server.metrics import KASPI_CALLS_BY, KASPI_LATENCY_BY

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)
COUNTERPARTY = "kaspi"


class KaspiNoAnswer(Exception):
    """Kaspi did not answer: the call may or may not have been processed."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _refs(payload: BaseModel, answer: BaseModel | None) -> Refs:
    """The ids a call concerns, for the journal: the payment of a checkout or notify,
    the payment (or refund) a scan found."""
    if isinstance(payload, CheckoutRequest):
        return Refs(payment_id=payload.paymentId)
    if isinstance(payload, NotifyRequest):
        return Refs(payment_id=payload.payment.paymentId)
    if isinstance(answer, ScanResponse):
        return Refs(payment_id=answer.payment.paymentId if answer.payment else None,
                    refund_id=answer.refund.refundId if answer.refund else None)
    return Refs()


class KaspiClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, caller_name: str,
                 timeout_ms: int, journal: Journal) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._caller_name = caller_name
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._journal = journal

    async def scan(self, request: ScanRequest, locale: str) -> ScanResponse:
        return await self._call("scan", request, locale, ScanResponse)

    async def checkout(self, request: CheckoutRequest, locale: str) -> CheckoutResponse:
        return await self._call("checkout", request, locale, CheckoutResponse)

    async def notify_payment(self, request: NotifyRequest, locale: str,
                             timeout_s: float | None = None) -> NotifyResponse:
        """`timeout_s` shortens the configured timeout (a leased attempt must end in
        time), never lengthens it."""
        timeout = self._timeout
        if timeout_s is not None and timeout.total is not None and timeout_s < timeout.total:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
        return await self._call("notifyPayment", request, locale, NotifyResponse, timeout)

    async def _call(self, method: str, payload: BaseModel, locale: str,
                    response_model: type[R], limit: aiohttp.ClientTimeout | None = None
                    ) -> R:
        headers = {
            "Content-Type": "application/json",
            "X-Request-ID": uuid.uuid4().hex,
            "X-Caller-Name": self._caller_name,
            "X-Locale": locale if locale in LOCALES else "ru-RU",
        }
        body = payload.model_dump_json(exclude_none=True)
        url = f"{self._base_url}/api/v1/qr/{method}"
        started = Started()
        outcome = "BAD_RESPONSE"
        status: int | None = None
        raw: bytes | None = None
        answer: R | None = None
        try:
            async with self._session.post(url, data=body, headers=headers,
                                          timeout=limit or self._timeout) as resp:
                status = resp.status
                raw = await resp.read()
                if resp.status >= 500:
                    outcome = f"HTTP_{resp.status}"
                    raise KaspiNoAnswer(outcome, raw[:200].decode(errors="replace"))
                try:
                    answer = response_model.model_validate(jsonutil.loads(raw))
                except (jsonutil.JSONDecodeError, ValidationError, ValueError,
                        TypeError) as exc:
                    outcome = "BAD_RESPONSE" if resp.status < 400 else f"HTTP_{resp.status}"
                    raise KaspiNoAnswer(outcome, str(exc)[:300]) from exc
                outcome = answer.result.resultCode  # type: ignore[attr-defined]
                return answer
        except TimeoutError as exc:
            outcome = "TIMEOUT"
            raise KaspiNoAnswer(outcome) from exc
        except aiohttp.ClientError as exc:
            outcome = "CONNECTION_ERROR"
            raise KaspiNoAnswer(outcome, str(exc)[:200]) from exc
        except asyncio.CancelledError:
            outcome = "CANCELLED"
            raise
        finally:
            duration_ms = started.elapsed_ms()
            KASPI_CALLS_BY(method, outcome).inc()
            KASPI_LATENCY_BY(method).observe(duration_ms / 1000)
            self._journal.record(Exchange(
                Direction.OUT, COUNTERPARTY, method, started, duration_ms,
                target=f"POST {url}", refs=_refs(payload, answer),
                request_id=headers["X-Request-ID"], http_status=status,
                transport_error=outcome if status is None else None,
                request_body=body, response_body=raw))
            log.debug("kaspi call", extra={"kaspi_method": method, "outcome": outcome,
                                           "request_id": headers["X-Request-ID"]})

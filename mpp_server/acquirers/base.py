"""What every acquirer client answers, whatever its wire format.

A call either returns the acquirer's answer or raises AcquirerNoAnswer (timeout,
connection error, HTTP 5xx, a body that is not an answer): the call may or may not have
been processed, and retrying is the caller's decision. AcquirerRefused is a final "no"
to a request (a 4xx with a reason), never a transient failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp

from mpp_server import jsonutil
from mpp_server.journal import (
    Direction,
    Exchange,
    Journal,
    Started,
    concerned,
    new_request_id,
)
from mpp_server.metrics import ACQUIRER_CALLS, ACQUIRER_LATENCY
from mpp_server.money import AmountError, format_amount, parse_amount


class Provider(StrEnum):
    HALYK_EPAY = "halyk-epay"
    KAPITAL = "kapital"
    KASPI_ECOM = "kaspi-ecom"


class Verdict(StrEnum):
    """The acquirer's status API, in the terms topup_apply_status takes."""

    PAID = "PAID"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"
    WAITING = "WAITING"


class AcquirerNoAnswer(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class AcquirerRefused(Exception):
    """A final refusal (the order or the refund will not happen); `reason` is the
    acquirer's code or message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:256]


@dataclass(frozen=True)
class Order:
    """What our order is called at the acquirer, and where the customer pays it."""

    order_id: str
    session_id: str | None
    payment_url: str


@dataclass(frozen=True)
class OrderRef:
    """A stored order: ours and the acquirer's names for it, what it was for."""

    topup_id: str
    order_id: str
    session_id: str | None
    amount_tiyn: int
    credited_today: bool = False  # Kapital: a full refund on the day is a Reverse


@dataclass(frozen=True)
class Status:
    verdict: Verdict
    # The amount the acquirer says it took (PAID); compared with the order's.
    paid_tiyn: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class CallbackClaim:
    """What a callback says (never trusted: it only names the order to check, and what
    it claims is counted when the status API disagrees)."""

    order_id: str | None
    topup_id: str | None
    claims_paid: bool


class Acquirer(Protocol):
    provider: Provider

    async def create_order(self, topup_id: str, amount_tiyn: int, callback_url: str) -> Order:
        ...

    async def status(self, order: OrderRef) -> Status:
        ...

    async def refund(self, order: OrderRef, refund_id: str, amount_tiyn: int) -> str:
        """Returns the operation sent; raises AcquirerRefused on a final refusal."""
        ...


def request_body(kwargs: dict[str, object]) -> str | bytes | None:
    """What a call sends, as the journal keeps it: `data` (bytes, text, or a form as a
    dict) or `json`."""
    data, payload = kwargs.get("data"), kwargs.get("json")
    if isinstance(data, str | bytes):
        return data
    if isinstance(data, dict):
        return urlencode({str(k): str(v) for k, v in data.items()})
    return jsonutil.dumps(payload) if payload is not None else None


class Caller:
    """One HTTP call with a timeout, its metric and its failure classified, and its row
    in the exchange journal (the ids from journal.concerning, set by the domain)."""

    def __init__(self, session: aiohttp.ClientSession, provider: Provider,
                 timeout_ms: int, journal: Journal) -> None:
        self.session = session
        self.provider = provider
        self.timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self.journal = journal

    @asynccontextmanager
    async def call(self, operation: str, method: str, url: str,
                   **kwargs: object) -> AsyncIterator[tuple[int, bytes]]:
        """Yields (HTTP status, body); 5xx, timeouts and connection errors raise
        AcquirerNoAnswer. The block sets nothing: its exceptions are counted as they are."""
        started = Started()
        outcome = "BAD_RESPONSE"
        status: int | None = None
        raw: bytes | None = None
        try:
            async with self.session.request(method, url, timeout=self.timeout,
                                            **kwargs) as resp:  # type: ignore[arg-type]
                status = resp.status
                raw = await resp.content.read(1 << 20)
                if resp.status >= 500:
                    outcome = f"HTTP_{resp.status}"
                    raise AcquirerNoAnswer(outcome, raw[:200].decode(errors="replace"))
                outcome = f"HTTP_{resp.status}"
                yield resp.status, raw
        except TimeoutError as exc:
            outcome = "TIMEOUT"
            raise AcquirerNoAnswer(outcome) from exc
        except aiohttp.ClientError as exc:
            outcome = "CONNECTION_ERROR"
            raise AcquirerNoAnswer(outcome, str(exc)[:200]) from exc
        except asyncio.CancelledError:
            outcome = "CANCELLED"
            raise
        finally:
            duration_ms = started.elapsed_ms()
            ACQUIRER_CALLS.labels(self.provider.value, operation, outcome).inc()
            ACQUIRER_LATENCY.labels(self.provider.value, operation).observe(
                duration_ms / 1000)
            self.journal.record(Exchange(
                Direction.OUT, self.provider.value, operation, started, duration_ms,
                target=f"{method} {url}", refs=concerned(), request_id=new_request_id(),
                http_status=status, transport_error=outcome if status is None else None,
                request_body=request_body(kwargs), response_body=raw, redact=True))


def json_with_amount(fields: dict[str, object], amount_tiyn: int) -> str:
    """A JSON object with `amount` as a JSON number in tenge, written exactly
    (`1500.00`): never through a float."""
    text = jsonutil.dumps(fields)
    assert text.endswith("}") and len(fields) > 0
    return text[:-1] + f',"amount":{format_amount(amount_tiyn)}}}'


def json_object(raw: bytes) -> dict[str, Any]:
    """An answer's JSON object; anything else is no answer."""
    try:
        value = jsonutil.loads(raw)
    except jsonutil.JSONDecodeError as exc:
        raise AcquirerNoAnswer("BAD_RESPONSE", str(exc)[:200]) from exc
    if not isinstance(value, dict):
        raise AcquirerNoAnswer("BAD_RESPONSE", "not a JSON object")
    return value


def amount_or_none(value: object) -> int | None:
    """An amount the acquirer reports, in tiyn; None when it is not one (then it cannot
    match the order's, and nothing is credited)."""
    try:
        return parse_amount(value)
    except AmountError:
        return None

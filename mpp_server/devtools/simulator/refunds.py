"""Kaspi calling the MPP's `POST /refund` (regulation §3.1 step 12, §4.4).

"If the MPP's refund API is unreachable, Kaspi retries": every attempt has its own
timeout; timeouts, connection errors and HTTP 5xx are retried with a short capped
backoff until the MPP answers or the total bound passes (then NO_ANSWER). Any answer
with a result code is final, like Kaspi's. The same request body is sent on every
attempt; only X-Request-ID changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass

import aiohttp

from mpp_server.devtools.simulator.faults import DEFAULT_TIMEOUT_MS, Endpoint, FaultBook, FaultMode
from mpp_server.devtools.simulator.model import Refund
from mpp_server.devtools.simulator.settings import SimulatorSettings
from mpp_server.devtools.simulator.state import NO_ANSWER
from mpp_server.devtools.simulator.wire import amount_number, dumps, raw_object
from mpp_server.kaspi_client.codes import ResultCode

log = logging.getLogger("mpp_server.devtools.simulator.refunds")

BAD_ANSWER = "BAD_ANSWER"  # not a Kaspi code: the MPP's 200 had no result code


@dataclass(frozen=True, slots=True)
class RefundStyle:
    """How the request is written: the regulation's example has quirks clients meet."""

    amount_as_number: bool = False  # "refundAmount": 100.00 instead of "100.00"
    trailing_space_keys: bool = False  # "paymentId " and "refundId " keys
    lose_replies: int = 0  # discard the MPP's first n answers as if lost in the network


@dataclass(frozen=True, slots=True)
class MppRefundAnswer:
    result_code: str
    result_message: str
    attempts: int


def refund_body(refund: Refund, style: RefundStyle) -> bytes:
    space = " " if style.trailing_space_keys else ""
    amount = amount_number(refund.amount_tiyn, keep_decimals=True)
    return raw_object([
        ("customerId", dumps(refund.customer_id)),
        ("paymentId" + space, dumps(refund.payment_id)),
        ("refundAmount", amount if style.amount_as_number else dumps(amount)),
        ("refundId" + space, dumps(refund.refund_id)),
        ("linkReceipt", dumps(refund.link_receipt)),
    ]).encode()


class RefundCaller:
    def __init__(self, settings: SimulatorSettings, faults: FaultBook,
                 session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._faults = faults
        self._session = session

    async def call(self, body: bytes, style: RefundStyle) -> MppRefundAnswer:
        settings = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.sim_refund_total_timeout_ms / 1000
        backoff_s = settings.sim_refund_backoff_initial_ms / 1000
        to_lose = style.lose_replies
        attempts = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return MppRefundAnswer(NO_ANSWER, "the MPP did not answer", attempts)
            attempts += 1
            timeout_s = min(settings.sim_refund_attempt_timeout_ms / 1000, remaining)
            answer = await self._attempt(body, timeout_s)
            if answer is not None and to_lose > 0:
                to_lose -= 1
                log.info("refund answer discarded as lost", extra={"attempt": attempts})
                answer = None
            if answer is not None:
                code, message = answer
                return MppRefundAnswer(code, message, attempts)
            await asyncio.sleep(min(backoff_s, max(deadline - loop.time(), 0)))
            backoff_s = min(backoff_s * 2, settings.sim_refund_backoff_max_ms / 1000)

    async def _attempt(self, body: bytes, timeout_s: float) -> tuple[str, str] | None:
        """One POST; None when it must be retried (no answer, or HTTP 5xx)."""
        fault = self._faults.take(Endpoint.REFUND)
        if fault is not None and fault.mode is not FaultMode.RESET_AFTER_PROCESSING:
            # timeout/http500/error_code on the way out: the request never arrives.
            delay_ms = fault.delay_ms or (DEFAULT_TIMEOUT_MS
                                          if fault.mode is FaultMode.TIMEOUT else 0)
            await asyncio.sleep(min(delay_ms / 1000, timeout_s))
            return None
        headers = {"Content-Type": "application/json", "X-Request-ID": uuid.uuid4().hex}
        try:
            async with self._session.post(
                self._settings.sim_mpp_refund_url, data=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("refund attempt failed", extra={"error": repr(exc)})
            return None
        if fault is not None:
            return None  # reset_after_processing: the MPP acted, its answer is lost
        if status >= 500:
            return None
        return _result_of(status, raw)


def _result_of(status: int, raw: bytes) -> tuple[str, str]:
    try:
        parsed = json.loads(raw)
        code = parsed["result"]["resultCode"]
        message = parsed["result"].get("resultMessage", "")
    except (ValueError, TypeError, KeyError, AttributeError):
        return BAD_ANSWER, f"HTTP {status}: {raw[:200]!r}"
    if not isinstance(code, str) or not isinstance(message, str):
        return BAD_ANSWER, f"HTTP {status}: result is not text"
    if status != 200 and code == ResultCode.SUCCESS:
        return BAD_ANSWER, f"HTTP {status} with SUCCESS"
    return code, message

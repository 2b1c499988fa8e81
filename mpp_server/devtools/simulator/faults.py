"""Injected faults: the network and Kaspi misbehaving on the next N calls of an endpoint.

Each endpoint has a FIFO queue; one call takes one fault. `scan`, `checkout` and
`notifyPayment` are Kaspi's endpoints (faults on what the MPP receives); `refund` is the
simulator's own call to the MPP's /refund (faults on what Kaspi sends).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

# A bound on queued faults: a test asking for more has a bug.
MAX_QUEUED_FAULTS = 100_000
DEFAULT_TIMEOUT_MS = 30_000
_POLL_S = 0.05


class Endpoint(StrEnum):
    SCAN = "scan"
    CHECKOUT = "checkout"
    NOTIFY_PAYMENT = "notifyPayment"
    REFUND = "refund"


class FaultMode(StrEnum):
    TIMEOUT = "timeout"  # no answer: sleep delayMs, then close the connection
    HTTP500 = "http500"  # HTTP 500, plain text, request not processed
    RESET_AFTER_PROCESSING = "reset_after_processing"  # processed, reply lost
    ERROR_CODE = "error_code"  # HTTP 200 with resultCode, request not processed
    # Processed, then answered HTTP 200 with `rawBody` verbatim instead of the real
    # answer: a Kaspi that breaks its own format (over-long fields, NUL, huge numbers).
    REPLACE_ANSWER = "replace_answer"


@dataclass(frozen=True, slots=True)
class Fault:
    mode: FaultMode
    delay_ms: int = 0
    result_code: str | None = None
    raw_body: str | None = None


class FaultQueueFull(Exception):
    pass


class FaultBook:
    def __init__(self) -> None:
        self._queues: dict[Endpoint, deque[Fault]] = {e: deque() for e in Endpoint}

    def add(self, endpoint: Endpoint, fault: Fault, times: int) -> None:
        queued = sum(len(q) for q in self._queues.values())
        if queued + times > MAX_QUEUED_FAULTS:
            raise FaultQueueFull(f"at most {MAX_QUEUED_FAULTS} faults may be queued")
        self._queues[endpoint].extend([fault] * times)

    def take(self, endpoint: Endpoint) -> Fault | None:
        queue = self._queues[endpoint]
        return queue.popleft() if queue else None

    def pending(self) -> dict[str, int]:
        return {e.value: len(q) for e, q in self._queues.items()}

    def clear(self) -> None:
        for queue in self._queues.values():
            queue.clear()


async def pause(request: web.Request, delay_ms: int, stopping: asyncio.Event) -> None:
    """Sleep up to delay_ms; stop early when the client hangs up or the server stops
    (aiohttp does not cancel handlers on disconnect; a 30 s sleep must not hold the
    shutdown)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay_ms / 1000
    while not stopping.is_set():
        remaining = deadline - loop.time()
        transport = request.transport
        if remaining <= 0 or transport is None or transport.is_closing():
            return
        try:
            await asyncio.wait_for(stopping.wait(), min(remaining, _POLL_S))
        except TimeoutError:
            pass


def drop_connection(request: web.Request) -> None:
    """Close the connection without an answer: the client sees a disconnect."""
    transport = request.transport
    if transport is not None:
        transport.close()

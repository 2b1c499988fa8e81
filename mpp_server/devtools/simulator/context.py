"""Everything one running simulator holds, reachable from handlers as `app[SIM]`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from mpp_server.devtools.simulator.faults import FaultBook
from mpp_server.devtools.simulator.model import KaspiError
from mpp_server.devtools.simulator.refunds import (
    MppRefundAnswer,
    RefundCaller,
    RefundStyle,
    refund_body,
)
from mpp_server.devtools.simulator.registry import Discrepancy
from mpp_server.devtools.simulator.settings import SimulatorSettings
from mpp_server.devtools.simulator.state import RefundOrder, SimState

log = logging.getLogger("mpp_server.devtools.simulator")

# A bound on refunds running in the background (refund-QR scans).
MAX_BACKGROUND_TASKS = 10_000
MAX_DISCREPANCIES = 1000


@dataclass
class Simulator:
    settings: SimulatorSettings
    state: SimState
    faults: FaultBook = field(default_factory=FaultBook)
    discrepancies: list[Discrepancy] = field(default_factory=list)
    # Set on shutdown: ends injected sleeps so the server stops promptly.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    caller: RefundCaller | None = None  # set while the app runs (cleanup_ctx)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def refund(self, order: RefundOrder, style: RefundStyle) -> MppRefundAnswer:
        """Kaspi's check, then the MPP's /refund until answered; the answer is recorded."""
        try:
            refund = self.state.prepare_refund(order)
        except KaspiError as exc:
            log.info("refund refused by Kaspi's own check",
                     extra={"refundId": order.refund_id, "resultCode": exc.code.value})
            return MppRefundAnswer(exc.code.value, exc.message, 0)
        assert self.caller is not None, "refunds are sent only while the app runs"
        answer = await self.caller.call(refund_body(refund, style), style)
        self.state.record_refund_answer(refund, answer.result_code, answer.result_message,
                                        answer.attempts)
        log.info("refund answered", extra={"refundId": refund.refund_id,
                                           "resultCode": answer.result_code,
                                           "attempts": answer.attempts})
        return answer

    def in_background(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        if len(self.tasks) >= MAX_BACKGROUND_TASKS:
            coroutine.close()
            log.warning("background refund dropped: too many running")
            return
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


SIM = web.AppKey("simulator", Simulator)

"""Helpers for tests/api/test_simulator.py: a Kaspi client as the MPP would call the simulator,
and a tiny stub of the MPP's /refund that records what Kaspi sent."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer

from mpp_server.devtools.launcher import CALLER_NAME
from mpp_server.devtools.simulator import SimulatorSettings, create_app

CALLER = CALLER_NAME
CUSTOMER = "900900900900"
_request_ids = itertools.count(1)


class Kaspi:
    """The simulator seen over HTTP: Kaspi's endpoints and the /sim control API."""

    def __init__(self, server: BaseTestServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def call(self, method: str, body: Any, *, caller: str | None = CALLER,
                   locale: str | None = None, raw: bytes | None = None,
                   request_id: str | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json",
                   "X-Request-ID": request_id or f"req-{next(_request_ids)}"}
        if caller is not None:
            headers["X-Caller-Name"] = caller
        if locale is not None:
            headers["X-Locale"] = locale
        data = raw if raw is not None else json.dumps(body).encode()
        async with self.session.post(self.url(f"/api/v1/qr/{method}"), data=data,
                                     headers=headers) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
            return answer

    async def raw_call(self, method: str, body: Any) -> bytes:
        headers = {"X-Request-ID": f"req-{next(_request_ids)}", "X-Caller-Name": CALLER}
        async with self.session.post(self.url(f"/api/v1/qr/{method}"), json=body,
                                     headers=headers) as response:
            return await response.read()

    async def control(self, method: str, path: str, body: Any = None,
                      expect: int = 200) -> Any:
        async with self.session.request(method, self.url(path), json=body) as response:
            assert response.status == expect, await response.text()
            return await response.json()

    async def qr(self, qr_type: str, **fields: Any) -> dict[str, Any]:
        answer: dict[str, Any] = await self.control("POST", "/sim/qr",
                                                    {"type": qr_type, **fields})
        return answer

    async def payment(self, payment_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.control("GET", f"/sim/payments/{payment_id}")
        return answer

    async def scan(self, qr_code: str, customer_id: str = CUSTOMER,
                   **kwargs: Any) -> dict[str, Any]:
        return await self.call("scan", {"qrCode": qr_code, "customerId": customer_id},
                               **kwargs)

    async def notify(self, payment_id: str, amount: Any = None, *, code: str = "SUCCESS",
                     customer_id: str = CUSTOMER, mpp_id: str = "mpp-1") -> dict[str, Any]:
        payment: dict[str, Any] = {"paymentId": payment_id, "mppPaymentId": mpp_id}
        if amount is not None:
            payment["paymentAmount"] = amount
        return await self.call("notifyPayment", {
            "result": {"resultCode": code, "resultMessage": code.lower()},
            "payment": payment, "customerId": customer_id})

    async def paid_dynamic(self, amount: str = "100.00", mpp_id: str = "mpp-1") -> str:
        qr = await self.qr("Dynamic", amount=amount)
        await self.scan(qr["qrCode"])
        answer = await self.notify(qr["paymentId"], mpp_id=mpp_id)
        assert answer["result"]["resultCode"] == "SUCCESS"
        payment_id: str = qr["paymentId"]
        return payment_id


@asynccontextmanager
async def running_simulator(**overrides: Any) -> AsyncIterator[Kaspi]:
    settings = SimulatorSettings(**{"sim_id_seed": 42, **overrides})
    async with TestServer(create_app(settings)) as server, aiohttp.ClientSession() as session:
        yield Kaspi(server, session)


@dataclass
class StubMpp:
    """The MPP's /refund: records every request; answers from `script`, then SUCCESS.

    Script items: "SUCCESS" or any result code, "http500", or "hang" (no answer).
    """

    script: list[str] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.received)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for _, raw in self.received]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append((dict(request.headers), await request.read()))
        step = self.script.pop(0) if self.script else "SUCCESS"
        if step == "http500":
            return web.Response(status=500, text="oops")
        if step == "hang":
            await asyncio.sleep(1)
        return web.json_response({"result": {"resultCode": step, "resultMessage": step}})


@asynccontextmanager
async def stub_mpp(script: list[str] | None = None) -> AsyncIterator[tuple[StubMpp, str]]:
    stub = StubMpp(list(script or []))
    app = web.Application()
    app.router.add_post("/refund", stub.handle)
    async with TestServer(app) as server:
        yield stub, str(server.make_url("/refund"))

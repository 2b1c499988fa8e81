"""A wallet backend's webhook endpoint for the tests, on a real port: every request is
checked with the reference Standard Webhooks verifier (the `standardwebhooks` package,
not our own code), recorded, and answered as the test says."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mpp_server.devtools.launcher import free_ports

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
HANG = -1  # an answer that never comes (until the receiver stops)
# What the receiver answers to the n-th request (1-based) carrying a webhook-id.
Plan = Callable[[str, int], int]


def always(status: int) -> Plan:
    return lambda webhook_id, n: status


def failing_first(times: int, status: int = 500) -> Plan:
    """`status` to the first `times` requests of each webhook-id, then 200."""
    return lambda webhook_id, n: status if n <= times else 200


@dataclass(frozen=True)
class Received:
    webhook_id: str
    timestamp: str
    body: bytes
    verified: bool  # the reference verifier accepted the signature
    answered: int   # the status we answered (HANG: none)

    @property
    def payload(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    plan: Plan = field(default_factory=lambda: always(200))
    secret: str = SECRET
    port: int = field(default_factory=lambda: free_ports(1)[0])
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mpp"

    async def start(self) -> None:
        """Listen (again, after stop(): the same port)."""
        app = web.Application()
        app.router.add_post("/hooks/mpp", self._handle)
        self._release = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Stop listening: connections are refused from now on."""
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        status = self.plan(webhook_id, 1 + sum(r.webhook_id == webhook_id
                                               for r in self.received))
        self.received.append(Received(webhook_id, request.headers.get("webhook-timestamp", ""),
                                      body, verified, status))
        if status == HANG:
            await self._release.wait()
            status = 503
        return web.Response(status=status, text="ok" if status < 300 else "no")

    def by_id(self) -> dict[str, list[Received]]:
        grouped: dict[str, list[Received]] = {}
        for one in self.received:
            grouped.setdefault(one.webhook_id, []).append(one)
        return grouped

    def accepted_ids(self) -> set[str]:
        return {r.webhook_id for r in self.received if 200 <= r.answered < 300}

    async def wait_for(self, condition: Callable[[], bool], what: str,
                       timeout_s: float = 20.0) -> None:
        """Poll `condition` (bounded): no fixed sleeps in the tests."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; received "
                                     f"{[(r.webhook_id, r.answered) for r in self.received]}")
            await asyncio.sleep(0.05)

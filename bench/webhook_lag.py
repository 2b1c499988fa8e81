"""The webhook delivery lag at light load (issue 25; docs/performance.md): from an
event's transaction to the wallet backend's receipt of its webhook.

A server process of its own (started by the dev launcher), on a database of its own (so
no backlog of the other phases' events is in its outbox), with WEBHOOK_URL at a receiver
in this process; a few customers pay one after another (each payment.completed is a
webhook); each webhook's lag is its arrival (this machine's clock) less its event's
`created_at` (the database's clock, the same machine's: the start of the event's
transaction, so the lag includes that transaction). `measure` returns the figures for
the report.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import statistics
import time
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from mpp_server.devtools.devdb import fresh_database
from mpp_server.devtools.launcher import Listeners, Processes, Tokens, free_port, server_env

CUSTOMERS = 2            # payments in flight at once: light load
DRAIN_TIMEOUT_S = 15.0   # for the last webhooks after the load stops
SERVER = "webhooks-server"
TOKENS = Tokens.new("bench-webhooks")
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class _Receiver:
    """The wallet backend: answers 204 at once, keeps each webhook-id's first arrival."""

    def __init__(self) -> None:
        self.arrived_at: dict[int, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived_at.setdefault(int(request.headers["webhook-id"]), time.time())
        return web.Response(status=204)


async def measure(http: aiohttp.ClientSession, processes: Processes, sim_url: str,
                  admin_dsn: str, duration_s: float) -> dict[str, Any]:
    """The lag figures (ms) of the webhooks of `duration_s` of light load."""
    receiver = _Receiver()
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with fresh_database(admin_dsn, "mpp_bench_webhooks") as dsn:
            listeners = Listeners.free()
            processes.start_server(SERVER, {
                **server_env(dsn, sim_url, listeners, TOKENS), "LOG_LEVEL": "WARNING",
                "LIMITS_MCI": "{}", "WEBHOOK_URL": f"http://127.0.0.1:{port}/hooks",
                "WEBHOOK_SECRET": SECRET})
            try:
                await asyncio.to_thread(processes.wait_http, SERVER,
                                        listeners.wallet_url + "/readyz")
                paid = await _light_load(http, listeners.wallet_url, sim_url, duration_s)
                return await _lags(dsn, receiver, paid)
            finally:  # gone before its database is
                await asyncio.to_thread(processes.kill, SERVER)
    finally:
        await runner.cleanup()


async def _post(http: aiohttp.ClientSession, url: str, body: Any,
                token: str = TOKENS.wallet) -> Any:
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        answer = await resp.json(content_type=None)
        assert resp.status in (200, 201), answer
        return answer


async def _light_load(http: aiohttp.ClientSession, wallet: str, sim_url: str,
                      duration_s: float) -> int:
    """CUSTOMERS customers paying one payment after another for `duration_s`: how many
    completed."""
    stop_at = time.monotonic() + duration_s

    async def customer(i: int) -> int:
        who = f"66{i:010d}"
        await _post(http, f"{wallet}/v1/accounts/{who}/deposits",
                    {"depositId": f"wh-{who}", "amount": "1000000.00"}, TOKENS.deposit)
        done = 0
        while time.monotonic() < stop_at:
            qr = await _post(http, sim_url + "/sim/qr", {"type": "Dynamic", "amount": "10.00"})
            scanned = await _post(http, wallet + "/v1/scan",
                                  {"qrCode": qr["qrCode"], "customerId": who})
            paid = await _post(http, f"{wallet}/v1/payments/"
                                     f"{scanned['payment']['paymentId']}/confirm",
                               {"customerId": who})
            done += paid["status"] == "COMPLETED"
        return done

    return sum(await asyncio.gather(*(customer(i) for i in range(CUSTOMERS))))


async def _lags(dsn: str, receiver: _Receiver, paid: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            events = {r["id"]: r["created_at"].timestamp()
                      for r in await conn.fetch("SELECT id, created_at FROM events")}
            if events.keys() <= receiver.arrived_at.keys() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    lags_ms = sorted((receiver.arrived_at[i] - created) * 1000
                     for i, created in events.items() if i in receiver.arrived_at)
    cuts = (statistics.quantiles(lags_ms, n=100, method="inclusive") if len(lags_ms) > 1
            else lags_ms * 99)
    return {"concurrency": CUSTOMERS, "payments": paid, "events": len(events),
            "delivered": len(lags_ms), "lag_ms": {
                "p50": round(cuts[49], 1) if cuts else None,
                "p95": round(cuts[94], 1) if cuts else None,
                "p99": round(cuts[98], 1) if cuts else None,
                "max": round(lags_ms[-1], 1) if lags_ms else None}}

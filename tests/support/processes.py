"""Real `serve` processes started by the launcher, for the system tests: several servers on
one database, killed and restarted (tests/system)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from mpp_server.devtools.launcher import Listeners, Processes
from tests.support.helpers import new_qr
from tests.support.stack import DEPOSIT_TOKEN, TOKEN, Stack, server_env

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEPOSIT_AUTH = {"Authorization": f"Bearer {DEPOSIT_TOKEN}"}


@dataclass
class ServerProcess:
    """A `serve` process the launcher started (its log in the test's folder)."""

    processes: Processes
    name: str
    wallet_url: str

    async def ready(self, timeout_s: float = 20) -> None:
        await asyncio.to_thread(self.processes.wait_http, self.name,
                                self.wallet_url + "/readyz", timeout_s)

    def kill(self) -> None:
        self.processes.kill(self.name)


@contextmanager
def servers(count: int, dsn: str, sim_url: str, tmp_path: Path,
            **overrides: str) -> Iterator[list[ServerProcess]]:
    processes = Processes(tmp_path)
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            listeners = Listeners.free()
            processes.start_server(f"server{i}", {**server_env(dsn, sim_url, listeners),
                                                  **overrides})
            started.append(ServerProcess(processes, f"server{i}", listeners.wallet_url))
        yield started
    finally:
        processes.stop()


async def wallet(http: aiohttp.ClientSession, server: ServerProcess, method: str, path: str,
                 body: Any = None, auth: dict[str, str] = AUTH) -> tuple[int, Any]:
    async with http.request(method, server.wallet_url + path, json=body,
                            headers=auth) as resp:
        return resp.status, await resp.json(content_type=None)


async def scanned_on(stack: Stack, server: ServerProcess, customer: str,
                          amount: str) -> str:
    qr = await new_qr(stack, "Dynamic", amount=amount)
    status, body = await wallet(stack.http, server, "POST", "/v1/scan",
                                {"qrCode": qr["qrCode"], "customerId": customer})
    assert status == 200, body
    return str(body["payment"]["paymentId"])


async def wait_db_status(dsn: str, payment_id: str, wanted: str, timeout_s: float = 30) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            status = await conn.fetchval("SELECT status FROM payments WHERE payment_id = $1",
                                         payment_id)
            if status == wanted:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{payment_id} is {status}"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()

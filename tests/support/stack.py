"""The test stack: the in-process simulator and server over real HTTP,
and the environment a test server runs with. The fixtures built on these are in
tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web

from mpp_server import db
from mpp_server.config import Settings
from mpp_server.devtools import launcher
from mpp_server.devtools.launcher import Listeners, Tokens, free_port
from mpp_server.domain import ledger
from mpp_server.serve import Runtime
from mpp_server.services import Services

# The login role the test servers connect as: a member of mpp_app (migration 016), owning
# nothing, with only the privileges `migrate` grants it (sql/functions/privileges.sql),
# as in production. Every test that runs a stack proves the server needs no more.
SERVER_ROLE = "mpp_server_test"
SERVER_ROLE_PASSWORD = "test-" + uuid.uuid4().hex


async def server_role_dsn(database_url: str) -> str:
    """`database_url` (an owner's), as the server's role instead."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            # Roles belong to the cluster, which other sessions' tests share.
            await conn.execute("SELECT pg_advisory_xact_lock(7172208, 2601)")
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1",
                                         SERVER_ROLE)
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(f"{verb} ROLE {SERVER_ROLE} LOGIN PASSWORD "
                               f"'{SERVER_ROLE_PASSWORD}'")
            await conn.execute(f"GRANT mpp_app TO {SERVER_ROLE}")
    finally:
        await conn.close()
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{SERVER_ROLE}:{SERVER_ROLE_PASSWORD}@{host}"))


# ---- the running stack: simulator + server, in-process, over real HTTP -------------

TOKEN = "test-token-" + uuid.uuid4().hex[:8]
DEPOSIT_TOKEN = "test-deposit-" + uuid.uuid4().hex[:8]
# Two wallet tokens, so a test can show rotation; one deposit token.
TOKENS = Tokens(f"other-token,{TOKEN}", DEPOSIT_TOKEN)
# The tests' tuning over the launcher's environment: quick notify retries, a short
# confirm budget, and quick top-up status polling (the contract's first check within
# 30 s, here much sooner).
TUNING = {
    "KASPI_TIMEOUT_MS": "1000", "CONFIRM_BUDGET_MS": "3000",
    "CONFIRM_SAFETY_MARGIN_MS": "200", "NOTIFY_BACKOFF_INITIAL_MS": "50",
    "NOTIFY_BACKOFF_MAX_MS": "400", "NOTIFY_POLL_INTERVAL_MS": "100",
    "GAUGES_REFRESH_MS": "500", "ACQUIRER_TIMEOUT_MS": "1000",
    "TOPUP_FIRST_CHECK_MS": "300", "TOPUP_CHECK_BACKOFF_MAX_MS": "1000",
    "TOPUP_POLL_INTERVAL_MS": "100", "TOPUP_REFUND_BACKOFF_INITIAL_MS": "50",
    "TOPUP_REFUND_BACKOFF_MAX_MS": "400",
}


def server_env(database_url: str, sim_url: str, listeners: Listeners | None = None
               ) -> dict[str, str]:
    """The environment a test server runs with (in-process or as a subprocess): the
    launcher's, the test tokens, TUNING. Without `listeners`, the wallet, Kaspi-facing
    and console listeners on any free port (in-process) and the acquiring one on a free
    port (its URL goes to the acquirers)."""
    listeners = listeners or Listeners("127.0.0.1:0", "127.0.0.1:0",
                                       f"127.0.0.1:{free_port()}", "127.0.0.1:0")
    return {**launcher.server_env(database_url, sim_url, listeners, TOKENS), **TUNING}


def settings_from(env: dict[str, str]) -> Settings:
    return Settings(**launcher.settings_kwargs(env))  # type: ignore[arg-type]


@dataclass
class Stack:
    wallet_url: str
    kaspi_url: str
    acquiring_url: str
    sim_url: str
    token: str
    deposit_token: str
    database_url: str
    pool: db.Pool
    http: aiohttp.ClientSession
    runtime: Runtime

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def services(self) -> Services:
        """The running server's wiring (its Kaspi client, outbox, journal)."""
        assert self.runtime.services is not None, "the stack's server is not started"
        return self.runtime.services


@asynccontextmanager
async def running_stack(database_url: str, pool: db.Pool,
                        **env_overrides: str) -> AsyncIterator[Stack]:
    """An in-process simulator and server on `database_url`; the books checked after."""
    from mpp_server.devtools.simulator.app import create_app as create_simulator
    from mpp_server.devtools.simulator.settings import SimulatorSettings

    kaspi_port, acquiring_port = launcher.free_ports(2)
    listeners = Listeners("127.0.0.1:0", f"127.0.0.1:{kaspi_port}",
                          f"127.0.0.1:{acquiring_port}", "127.0.0.1:0")
    sim_env = launcher.simulator_process_env("127.0.0.1:0", listeners.kaspi_url + "/refund")
    sim_settings = SimulatorSettings(**launcher.settings_kwargs(sim_env),  # type: ignore[arg-type]
                                     sim_refund_attempt_timeout_ms=2000,
                                     sim_refund_total_timeout_ms=20_000)
    sim_runner = web.AppRunner(create_simulator(sim_settings), access_log=None)
    await sim_runner.setup()
    await web.TCPSite(sim_runner, "127.0.0.1", 0).start()
    sim_url = f"http://127.0.0.1:{sim_runner.addresses[0][1]}"
    env = server_env(await server_role_dsn(database_url), sim_url, listeners)
    runtime = Runtime(settings_from({**env, **env_overrides}))
    await runtime.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Stack(runtime.wallet_url, runtime.kaspi_url, runtime.acquiring_url, sim_url,
                        TOKEN, DEPOSIT_TOKEN, database_url, pool, http, runtime)
    finally:
        await runtime.stop()
        await sim_runner.cleanup()
    # After every scenario: the books still balance.
    async with pool.acquire() as conn:
        report = await ledger.check_invariants(conn)
    assert report.ok, f"ledger invariants broken: {report}"

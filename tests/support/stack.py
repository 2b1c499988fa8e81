"""The test stack: fresh databases, the in-process simulator and server over real HTTP,
and the environment a test server runs with. The fixtures built on these are in
tests/conftest.py."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web

from mpp_server import db, migrate
from mpp_server.config import Settings
from mpp_server.domain import ledger
from mpp_server.serve import Runtime


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@asynccontextmanager
async def fresh_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A new database with every migration applied, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = _with_database(admin_dsn, name)
        await migrate.migrate(dsn)
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


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

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


TOKEN = "test-token-" + uuid.uuid4().hex[:8]
DEPOSIT_TOKEN = "test-deposit-" + uuid.uuid4().hex[:8]
CALLER_NAME = "MPPSERVER"


def server_env(database_url: str, sim_url: str, kaspi_listen: str = "127.0.0.1:0",
               wallet_listen: str = "127.0.0.1:0",
               acquiring_listen: str = "127.0.0.1:0") -> dict[str, str]:
    """The environment a test server runs with (in-process or as a subprocess)."""
    return {
        "DATABASE_URL": database_url, "KASPI_BASE_URL": sim_url,
        "KASPI_CALLER_NAME": CALLER_NAME, "KASPI_TIMEOUT_MS": "1000",
        "WALLET_API_TOKENS": f"other-token,{TOKEN}", "DEPOSIT_API_TOKENS": DEPOSIT_TOKEN,
        "KASPI_ALLOWED_NETWORKS": "127.0.0.0/8",
        "WALLET_LISTEN": wallet_listen, "KASPI_LISTEN": kaspi_listen,
        "ADMIN_LISTEN": "127.0.0.1:0",
        "CONFIRM_BUDGET_MS": "3000", "CONFIRM_SAFETY_MARGIN_MS": "200",
        "NOTIFY_BACKOFF_INITIAL_MS": "50", "NOTIFY_BACKOFF_MAX_MS": "400",
        "NOTIFY_POLL_INTERVAL_MS": "100", "GAUGES_REFRESH_MS": "500",
        # Top-ups: the simulator's acquirers, callbacks to our acquiring listener, quick
        # status polling (the contract's first check within 30 s, here much sooner).
        "ACQUIRING_LISTEN": acquiring_listen,
        "ACQUIRING_PUBLIC_URL": f"http://{acquiring_listen}",
        "HALYK_EPAY_BASE_URL": f"{sim_url}/halyk-epay", "KAPITAL_BASE_URL": f"{sim_url}/kapital",
        "KASPI_ECOM_BASE_URL": f"{sim_url}/kaspi-ecom", "ACQUIRER_TIMEOUT_MS": "1000",
        # The simulator's test credentials (production has no defaults: config.py).
        "HALYK_EPAY_CLIENT_ID": "mpp-test", "HALYK_EPAY_CLIENT_SECRET": "mpp-test-secret",
        "HALYK_EPAY_TERMINAL": "67e34d63-102f-4bd1-898e-370781d0074d",
        "KAPITAL_MERCHANT_ID": "MPPTEST", "KASPI_ECOM_TOKEN": "mpp-test-token",
        "TOPUP_FIRST_CHECK_MS": "300", "TOPUP_CHECK_BACKOFF_MAX_MS": "1000",
        "TOPUP_POLL_INTERVAL_MS": "100", "TOPUP_REFUND_BACKOFF_INITIAL_MS": "50",
        "TOPUP_REFUND_BACKOFF_MAX_MS": "400",
    }


def settings_from(env: dict[str, str]) -> Settings:
    return Settings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]


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


@asynccontextmanager
async def running_stack(database_url: str, pool: db.Pool,
                        **env_overrides: str) -> AsyncIterator[Stack]:
    """An in-process simulator and server on `database_url`; the books checked after."""
    from mpp_server.devtools.simulator.app import create_app as create_simulator
    from mpp_server.devtools.simulator.settings import SimulatorSettings

    kaspi_port = free_port()
    sim_settings = SimulatorSettings(
        simulator_listen="127.0.0.1:0",
        sim_mpp_refund_url=f"http://127.0.0.1:{kaspi_port}/refund",
        sim_caller_names=CALLER_NAME, sim_refund_attempt_timeout_ms=2000,
        sim_refund_total_timeout_ms=20_000)
    sim_runner = web.AppRunner(create_simulator(sim_settings), access_log=None)
    await sim_runner.setup()
    await web.TCPSite(sim_runner, "127.0.0.1", 0).start()
    sim_url = f"http://127.0.0.1:{sim_runner.addresses[0][1]}"
    env = server_env(await server_role_dsn(database_url), sim_url,
                     kaspi_listen=f"127.0.0.1:{kaspi_port}",
                     acquiring_listen=f"127.0.0.1:{free_port()}")
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

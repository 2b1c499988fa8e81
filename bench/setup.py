"""The benchmark's set-up: a fresh database with a history made by the server's own steps
(mpp_server.domain: deposits, `payments.confirm_statement`, Kaspi's answer applied,
refunds), the simulator and the server processes (through the dev launcher,
devtools/launcher.py), the echo server, and the wallet customers: identified,
deposited, with their QR codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench.load import Load, gather_limited
from mpp_server import db
from mpp_server.db import Conn
from mpp_server.devtools import devdb
from mpp_server.devtools.launcher import (
    MPP_SERVER,
    LaunchError,
    Listeners,
    Processes,
    SimulatorTls,
    Tokens,
    free_port,
    free_ports,
    loopback,
    server_env,
    simulator_process_env,
)
from mpp_server.domain import accounts, deposits, payments
from mpp_server.domain.limits import DEFAULT_LIMITS_MCI, DEFAULT_MCI_TENGE, Level, parse_limits
from mpp_server.domain.outbox import Notice, apply_answer
from mpp_server.domain.outcomes import DEBIT_NOTICES, ConfirmOutcome
from mpp_server.domain.refunds import InboundExchange, RefundRequest, apply_refund
from mpp_server.kaspi_client.models import NotifyResponse
from mpp_server.serve import loop_factory

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / ".data/bench-logs"
TOKENS = Tokens.new("bench")
BENCH_DEPOSIT = "100000000.00"  # enough for every payment of a run
# The bench's customers are fully identified, and the limits are on (--limits-mci): NONE
# as shipped (the law's 50 MCI threshold, art. 42), FULL with a per-payment limit and
# day and month turnover limits, so that every confirm sums the customer's payments of
# the Kazakh day and month as in production. The FULL figures are the bench's own
# assumption (docs/performance.md), far above what a run pays, and FULL has no balance
# cap (a missing key: no limit), so the bench's large deposits pass.
CUSTOMER_LEVEL = Level.FULL
LIMITS_MCI = json.dumps({**json.loads(DEFAULT_LIMITS_MCI),
                         CUSTOMER_LEVEL.value: {"payment": 1000, "daily": 5000,
                                                "monthly": 50000}})
# The history is data, not a decision: it is written without limits.
NO_LIMITS = parse_limits("{}", DEFAULT_MCI_TENGE)
SEED_RECEIPT = "https://receipt-test.kaspi.kz/web?seed"
HISTORY_CUSTOMERS = 100
SEED_EXCHANGE = InboundExchange("127.0.0.1", "/refund", {}, "{}", 0)
KASPI_SUCCESS = NotifyResponse.model_validate(
    {"result": {"resultCode": "SUCCESS", "resultMessage": "success"},
     "linkReceipt": SEED_RECEIPT})
MONTH_PAYMENT_TIYN = 100  # 1.00 tenge: the count of rows is what costs, not the sum
SEED_BATCH = 500


# ---- the database ---------------------------------------------------------------------

def admin_dsn() -> str:
    """DATABASE_URL (a database is created on its server), else the private PostgreSQL
    (MPP_DEVDB_DIR, MPP_DEVDB_PORT) over its Unix socket (docs/performance.md)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    data_dir, port = devdb.configured()
    devdb.ensure_postgres(data_dir, port)
    return devdb.socket_dsn(data_dir, port)


async def _completed_payment(conn: Conn, payment_id: str, customer: str,
                             amount_tiyn: int) -> None:
    """One payment as the server makes it: the scan's row (`payment_scanned`), confirm's
    statement (`payments.confirm_statement`), then Kaspi's SUCCESS applied as the notify
    outbox applies it."""
    row = await conn.fetchrow(
        "SELECT (s.payment).mpp_payment_id, (s.payment).locale "
        "FROM payment_scanned($1, $2, 'Dynamic', $3, NULL, $4, NULL, 'ru-RU') s",
        payment_id, customer, amount_tiyn, {})
    assert row is not None
    outcome, _ = await payments.confirm_statement(conn, payment_id, customer, None, None,
                                                  0.0, NO_LIMITS.sql_json, 0)
    if outcome is not ConfirmOutcome.DEBITED:
        raise RuntimeError(f"seeding {payment_id}: payment_confirm answered {outcome}")
    staged = DEBIT_NOTICES[ConfirmOutcome.DEBITED]
    notice = Notice(payment_id, str(row["mpp_payment_id"]), customer, amount_tiyn,
                    staged.result_code.value, staged.result_message, row["locale"])
    await apply_answer(conn, notice, KASPI_SUCCESS)


async def _completed_payments(pool: db.Pool, todo: list[tuple[str, str, int]]) -> None:
    """(paymentId, customer, amount) each completed, in order, on one connection, a
    transaction per SEED_BATCH: nothing else writes yet, and one writer holds no lock
    another waits for."""
    async with pool.acquire() as conn:
        for first in range(0, len(todo), SEED_BATCH):
            async with conn.transaction():
                for payment_id, customer, amount_tiyn in todo[first:first + SEED_BATCH]:
                    await _completed_payment(conn, payment_id, customer, amount_tiyn)


async def _seed_history(pool: db.Pool, count: int) -> None:
    customers = [f"S{c:011d}" for c in range(1, HISTORY_CUSTOMERS + 1)]
    await gather_limited([deposits.deposit(pool, f"seed-{c}", c, 100_000_000, NO_LIMITS)
                          for c in customers], limit=4)
    paid = [(f"SEED{i}", customers[i % HISTORY_CUSTOMERS], 10_000) for i in range(1, count + 1)]
    await _completed_payments(pool, paid)
    await gather_limited([
        apply_refund(pool, RefundRequest(f"SEEDR{i}", payment_id, customer, amount_tiyn,
                                         SEED_RECEIPT), SEED_EXCHANGE, NO_LIMITS)
        for i, (payment_id, customer, amount_tiyn) in enumerate(paid, 1) if i % 4 == 0],
        limit=4)


async def _seed_month(pool: db.Pool, customer: str, count: int) -> None:
    async with pool.acquire() as conn:
        await accounts.set_level(conn, customer, CUSTOMER_LEVEL)
    await deposits.deposit(pool, f"month-{customer}", customer, count * MONTH_PAYMENT_TIYN,
                           NO_LIMITS)
    await _completed_payments(pool, [(f"MONTH{i}", customer, MONTH_PAYMENT_TIYN)
                                     for i in range(count)])


async def seed(dsn: str, history: int, month_customer: str, month_history: int) -> None:
    """A database that has been running, not an empty one: `history` completed payments
    of 100 customers (a quarter refunded), and `month_history` of `month_customer` this
    month, then ANALYZE, as autovacuum does on a live database. On empty tables
    PostgreSQL caches plans (the foreign-key checks' among them) that scan sequentially,
    and they stay in pooled connections until autovacuum analyzes the tables; a run of a
    few seconds on an empty database measures that transient instead
    (docs/performance.md)."""
    pool = await db.create_pool(dsn, min_size=1, max_size=4)
    try:
        if history:
            await _seed_history(pool, history)
        if month_history:
            await _seed_month(pool, month_customer, month_history)
        async with pool.acquire() as conn:
            await conn.execute("ANALYZE")
    finally:
        await pool.close()


# ---- the processes ----------------------------------------------------------------------

@dataclass
class Stack:
    """The simulator and the server processes of a run, all in `processes`."""

    processes: Processes
    sim_url: str
    listeners: list[Listeners]
    tls: SimulatorTls  # the simulator's TLS listener (Kapital's mutual TLS)

    @property
    def wallets(self) -> list[str]:
        return [listeners.wallet_url for listeners in self.listeners]

    @property
    def kaspis(self) -> list[str]:
        return [listeners.kaspi_url for listeners in self.listeners]

    def cpu_parts(self) -> dict[str, list[int]]:
        procs = self.processes.procs
        return {"server processes": [procs[f"server{i}"].pid
                                     for i in range(len(self.listeners))],
                "simulator": [procs["simulator"].pid]}


def _server_tuning(args: argparse.Namespace) -> dict[str, str]:
    return {"DEPOSIT_MAX_AMOUNT": BENCH_DEPOSIT, "DB_QUERY_METRICS": "true",
            "DB_POOL_MAX": str(args.pool), "LOG_LEVEL": "WARNING",
            "LIMITS_MCI": args.limits_mci}


def start_stack(dsn: str, args: argparse.Namespace, log_dir: Path = LOG_DIR,
                tree: Path | None = None) -> Stack:
    """The simulator and `args.workers` servers, started (not yet ready); their logs in
    `log_dir` (emptied first). `tree`: run the code of another checkout (bench/ab.py),
    from its directory."""
    shutil.rmtree(log_dir, ignore_errors=True)
    processes = Processes(log_dir, cwd=tree)
    ports = iter(free_ports(2 + Listeners.COUNT * args.workers))
    sim_listen = loopback(next(ports))
    tls = SimulatorTls.made(ROOT / ".data/sim-tls", loopback(next(ports)))
    listeners = [Listeners.on(ports) for _ in range(args.workers)]
    stack = Stack(processes, f"http://{sim_listen}", listeners, tls)
    processes.start_simulator(simulator_process_env(sim_listen,
                                                    listeners[0].kaspi_url + "/refund", tls))
    for i, own in enumerate(listeners):
        program = ((sys.executable, "-m", "bench.cpu_profile", str(log_dir / f"server{i}.prof"))
                   if args.profile else MPP_SERVER)
        processes.start_server(f"server{i}", {**server_env(dsn, stack.sim_url, own, TOKENS,
                                                          tls), **_server_tuning(args)},
                               program)
    return stack


async def wait_ready(stack: Stack) -> None:
    """Until the simulator and every server answer; a child that exits first ends the
    bench with its log (LaunchError)."""
    await asyncio.to_thread(stack.processes.wait_http, "simulator",
                            stack.sim_url + "/sim/healthz")
    for i, wallet in enumerate(stack.wallets):
        await asyncio.to_thread(stack.processes.wait_http, f"server{i}", wallet + "/readyz")


def start_echo(processes: Processes) -> str:
    """The echo server (bench/echo.py), listening; its URL."""
    port = free_port()
    processes.start("echo", [sys.executable, "-m", "bench.echo", str(port)])

    def accepts() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    processes.wait_until(accepts, "the echo server listening", "echo", 15)
    return f"http://127.0.0.1:{port}/echo"


# ---- the customers ------------------------------------------------------------------

async def prepare_customers(load: Load, customers: list[str], dynamic_qrs: int
                            ) -> tuple[list[str], dict[str, str]]:
    """Each customer identified (CUSTOMER_LEVEL) and deposited once, as the bank's core
    does it; `dynamic_qrs` Dynamic QR codes of 100 tenge, and a Static one per customer."""
    core = {"Authorization": f"Bearer {TOKENS.deposit}"}
    for status, answer in await gather_limited([
            load.put(f"{load.wallet()}/v1/accounts/{c}/identification",
                     {"level": CUSTOMER_LEVEL.value}, core) for c in customers]):
        assert status == 200, answer
    for status, answer in await gather_limited([
            load.post(f"{load.wallet()}/v1/accounts/{c}/deposits",
                      {"depositId": f"bench-{c}", "amount": BENCH_DEPOSIT}, core)
            for c in customers]):
        assert status in (200, 201), answer
    qr_pool = await gather_limited([load.new_qr("Dynamic", "100.00")
                                    for _ in range(dynamic_qrs)])
    static_qrs = dict(zip(customers, await gather_limited(
        [load.new_qr("Static") for _ in customers]), strict=True))
    return qr_pool, static_qrs


T = TypeVar("T")


def customers(count: int) -> list[str]:
    """The wallet customers of a run (`make bench`'s first is --month-history's)."""
    return [f"77{i:010d}" for i in range(count)]


def run_to_end(main: Coroutine[Any, Any, T], name: str, leaves: str) -> T:
    """`main` on the server's event loop. SIGTERM cancels it as Ctrl-C does (its own
    clean-up stops the processes and drops the databases) and exits 143; a child that
    fails to start exits 1; each with one line on stderr naming `name`."""

    async def cancellable() -> T:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        try:
            return runner.run(cancellable())
        except asyncio.CancelledError:
            print(f"{name}: stopped (SIGTERM); {leaves}", file=sys.stderr)
            raise SystemExit(143) from None
        except LaunchError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None

"""`make bench`: complete payments per second through the real stack, and what limits them.

Starts a private PostgreSQL (unless DATABASE_URL is set) with a fresh database, the
Kaspi simulator and W server processes, then drives many wallet customers concurrently:
deposit once, then scan → confirm → COMPLETED with linkReceipt (Dynamic, then Static),
then Kaspi's POST /refund. In the same run it measures the machine's raw limits (an
aiohttp JSON echo server driven by the same load generator; PostgreSQL single-row
insert commits/s) and checks the ledger invariants. Writes bench/results/latest.json
and prints a table. `--smoke` is a few-second run for `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from bench import storage
from mpp_server import migrate
from mpp_server.devtools import devdb
from mpp_server.devtools.ports import free_ports
from mpp_server.domain import ledger
from mpp_server.domain.outcomes import DEBIT_NOTICES_ARG

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-" + secrets.token_hex(8)
DEPOSIT_TOKEN = "bench-deposit-" + secrets.token_hex(8)
BENCH_DEPOSIT = "100000000.00"  # enough for every payment of a run
CALLER = "MPPSERVER"


async def gather_limited(coros: list[Any], limit: int = 32) -> list[Any]:
    """asyncio.gather with at most `limit` in flight (set-up must not flood a listener)."""
    sem = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with sem:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def latency_ms(values: list[float]) -> dict[str, float]:
    return {f"p{p}": round(percentile(values, p) * 1000, 2) for p in (50, 95, 99)}


@dataclass
class Phase:
    name: str
    started: float = 0.0
    elapsed_s: float = 0.0
    done: int = 0
    failed: int = 0
    scan_s: list[float] = field(default_factory=list)
    confirm_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.failed += 1
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds spent by each part of the stack during a phase: where the time goes,
    independent of whatever else the machine is doing."""

    def __init__(self, parts: dict[str, list[int]]) -> None:
        self.parts = parts
        self.start: dict[str, float] = {}
        self.pg_start: dict[int, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: sum(cpu_s(p) for p in pids) for name, pids in self.parts.items()}
        usage = os.times()
        now["load generator"] = usage.user + usage.system
        return now

    def begin(self) -> None:
        self.start = self._now()
        self.pg_start = {pid: cpu_s(pid) for pid in postgres_pids()}

    def per_operation_ms(self, operations: int) -> dict[str, float]:
        end = self._now()
        # PostgreSQL backends come and go: count what each one still alive spent since.
        end["postgres"] = sum(cpu_s(pid) - self.pg_start.get(pid, 0.0)
                              for pid in postgres_pids())
        self.start["postgres"] = 0.0
        return {name: round((end[name] - self.start[name]) * 1000 / operations, 3)
                for name in end} if operations else {}


class Processes:
    """The simulator and the server processes the bench starts; all stopped at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.names[proc.pid] = name
        return proc

    def log_tail(self, proc: subprocess.Popen[bytes], chars: int = 3000) -> str:
        path = self.log_dir / f"{self.names[proc.pid]}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def wait_ready(http: aiohttp.ClientSession, url: str, procs: Processes,
                     proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Until `url` answers 200; a child that exits first ends the bench with its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode} before it was "
                             f"ready; its log ends with:\n{procs.log_tail(proc)}")
        with suppress(aiohttp.ClientError):
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout_s} s")


class Load:
    def __init__(self, http: aiohttp.ClientSession, wallets: list[str], kaspis: list[str],
                 sim: str) -> None:
        self.http, self.wallets, self.kaspis, self.sim = http, wallets, kaspis, sim
        self.auth = {"Authorization": f"Bearer {TOKEN}"}
        self._next = 0

    def wallet(self) -> str:
        # Round-robin over the server processes (what SO_REUSEPORT or a balancer does).
        self._next += 1
        return self.wallets[self._next % len(self.wallets)]

    async def post(self, url: str, body: Any, headers: dict[str, str] | None = None
                   ) -> tuple[int, Any]:
        async with self.http.post(url, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def get(self, url: str) -> tuple[int, Any]:
        async with self.http.get(url, headers=self.auth) as resp:
            return resp.status, await resp.json(content_type=None)

    async def new_qr(self, qr_type: str, amount: str | None = None) -> str:
        body = {"type": qr_type, **({"amount": amount} if amount else {})}
        status, answer = await self.post(self.sim + "/sim/qr", body)
        assert status == 200, answer
        return str(answer["qrCode"])

    async def pay(self, phase: Phase, qr_code: str, customer: str, amount: str | None,
                  completed: list[tuple[str, str, str]]) -> None:
        base = self.wallet()
        started = time.perf_counter()
        status, scanned = await self.post(base + "/v1/scan",
                                          {"qrCode": qr_code, "customerId": customer},
                                          self.auth)
        phase.scan_s.append(time.perf_counter() - started)
        if status != 200:
            phase.error(f"scan {status} {scanned.get('error', {}).get('code')}")
            return
        payment_id = scanned["payment"]["paymentId"]
        body = {"customerId": customer, **({"amount": amount} if amount else {})}
        started = time.perf_counter()
        status, paid = await self.post(f"{base}/v1/payments/{payment_id}/confirm", body,
                                       self.auth)
        phase.confirm_s.append(time.perf_counter() - started)
        while status == 200 and paid["status"] == "PENDING":
            await asyncio.sleep(0.05)
            status, paid = await self.get(f"{base}/v1/payments/{payment_id}")
        if status != 200 or paid["status"] != "COMPLETED" or not paid.get("linkReceipt"):
            phase.error(f"confirm {status} {paid.get('status') or paid.get('error')}")
            return
        phase.done += 1
        completed.append((payment_id, customer, paid["amount"]))


async def run_phase(phase: Phase, duration_s: float, concurrency: int, job: Any) -> Phase:
    """Run `job(worker_index)` in `concurrency` loops until `duration_s` has passed."""
    stop_at = time.perf_counter() + duration_s
    phase.started = time.perf_counter()

    async def loop(i: int) -> None:
        while time.perf_counter() < stop_at:
            if not await job(i):
                return

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    phase.elapsed_s = time.perf_counter() - phase.started
    return phase


async def payments_phase(load: Load, name: str, customers: list[str], duration_s: float,
                         qr_pool: list[str] | None, static_qrs: dict[str, str] | None,
                         completed: list[tuple[str, str, str]]) -> Phase:
    phase = Phase(name)

    async def job(i: int) -> bool:
        customer = customers[i]
        if qr_pool is not None:
            if not qr_pool:
                return False
            await load.pay(phase, qr_pool.pop(), customer, None, completed)
        else:
            assert static_qrs is not None
            await load.pay(phase, static_qrs[customer], customer, "100", completed)
        return True

    return await run_phase(phase, duration_s, len(customers), job)


async def refunds_phase(load: Load, completed: list[tuple[str, str, str]], duration_s: float,
                        concurrency: int) -> Phase:
    phase = Phase("refunds")
    todo = list(completed)
    latencies = phase.confirm_s
    counter = 0

    async def job(i: int) -> bool:
        nonlocal counter
        if not todo:
            return False
        payment_id, customer, amount = todo.pop()
        counter += 1
        url = load.kaspis[counter % len(load.kaspis)] + "/refund"
        body = {"customerId": customer, "paymentId": payment_id, "refundAmount": amount,
                "refundId": "BR" + uuid.uuid4().hex[:24],
                "linkReceipt": "https://receipt-test.kaspi.kz/web?extTranId=QRBENCH"}
        started = time.perf_counter()
        status, answer = await load.post(url, body, {"X-Request-ID": uuid.uuid4().hex})
        latencies.append(time.perf_counter() - started)
        if status == 200 and answer["result"]["resultCode"] == "SUCCESS":
            phase.done += 1
        else:
            phase.error(f"refund {status} {answer.get('result', {}).get('resultCode')}")
        return True

    return await run_phase(phase, duration_s, concurrency, job)


ECHO_SERVER = """
import sys
from aiohttp import web
try:
    import uvloop
except ImportError:
    uvloop = None
async def echo(request):
    return web.json_response(await request.json())
app = web.Application()
app.router.add_post("/echo", echo)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
            loop=uvloop.new_event_loop() if uvloop else None)
"""


async def echo_phase(http: aiohttp.ClientSession, procs: Processes, duration_s: float,
                     concurrency: int) -> Phase:
    [port] = free_ports(1)
    procs.start("echo", [sys.executable, "-c", ECHO_SERVER, str(port)], {})
    url = f"http://127.0.0.1:{port}/echo"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with suppress(aiohttp.ClientError):
            async with http.post(url, json={}) as resp:
                if resp.status == 200:
                    break
        await asyncio.sleep(0.1)
    phase = Phase("echo")
    body = {"qrCode": "5920000000000000000000000001", "customerId": "900912345678"}

    async def job(i: int) -> bool:
        started = time.perf_counter()
        async with http.post(url, json=body) as resp:
            await resp.json()
        phase.confirm_s.append(time.perf_counter() - started)
        phase.done += 1
        return True

    return await run_phase(phase, duration_s, concurrency, job)


async def pg_insert_phase(dsn: str, duration_s: float, connections: int) -> Phase:
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, "
                       "v bigint NOT NULL)")
    await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    assert pool is not None
    phase = Phase("pg_insert")

    async def job(i: int) -> bool:
        async with pool.acquire() as c:
            await c.execute("INSERT INTO bench_commits (v) VALUES ($1)", i)
        phase.done += 1
        return True

    try:
        return await run_phase(phase, duration_s, connections, job)
    finally:
        await pool.close()


async def scrape_counter(http: aiohttp.ClientSession, wallets: list[str], name: str) -> float:
    total = 0.0
    for base in wallets:
        async with http.get(base + "/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


async def xacts(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()")
        return value
    finally:
        await conn.close()


def private_postgres() -> str:
    """The private cluster, reached over its Unix socket: on one machine that costs less
    CPU per round trip than TCP loopback (docs/performance.md)."""
    data_dir = ROOT / ".data/pg"
    devdb.ensure_postgres(data_dir)
    return f"postgresql://{devdb.SUPERUSER}@/postgres?host={data_dir}&port={devdb.DEFAULT_PORT}"


SEED_HISTORY = """
DO $$
DECLARE
    v_funding bigint := (SELECT id FROM accounts WHERE kind = 'funding' AND shard = 0);
    v_customer text;
    v_payment text;
    v_shard int;
BEGIN
    FOR c IN 1..100 LOOP
        v_customer := 'S' || lpad(c::text, 11, '0');
        INSERT INTO accounts (kind, customer_id) VALUES ('customer', v_customer);
        PERFORM ledger_transfer('deposit', 'seed-' || v_customer, v_funding,
                                (SELECT id FROM accounts WHERE customer_id = v_customer),
                                100000000);
    END LOOP;
    FOR i IN 1..$1 LOOP
        v_customer := 'S' || lpad((1 + i % 100)::text, 11, '0');
        v_payment := 'SEED' || i;
        v_shard := i % 16;
        INSERT INTO payments (payment_id, customer_id, qr_code_type, status, amount_tiyn,
                              merchant)
        VALUES (v_payment, v_customer, 'Dynamic', 'SCANNED', 10000, '{}');
        PERFORM payment_debit(v_payment, v_customer, 'SCANNED', 10000, v_shard, NULL, 0,
                              '$NOTICES'::jsonb, '{}'::jsonb, 0);
        PERFORM apply_notify_answer_once(v_payment, 'SUCCESS', 'SUCCESS', 'success',
                                         'https://receipt-test.kaspi.kz/web?seed', v_shard);
        IF i % 4 = 0 THEN
            PERFORM refund_apply_logged('SEEDR' || i, v_payment, v_customer, 10000,
                                        'https://receipt-test.kaspi.kz/web?seed', v_shard,
                                        '127.0.0.1', '/refund', '{}', '{}', 0);
        END IF;
    END LOOP;
END;
$$"""


async def seed_history(dsn: str, payments: int) -> None:
    """A database that has been running, not an empty one: `payments` completed payments
    (a quarter refunded) made by the server's own SQL steps, then ANALYZE, as
    autovacuum does on a live database. On empty tables PostgreSQL caches plans (the
    foreign-key checks' among them) that scan sequentially, and they stay in pooled
    connections until autovacuum analyzes the tables; a benchmark of a few seconds on an
    empty database measures that transient instead (docs/performance.md)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SEED_HISTORY.replace("$1", str(int(payments)))
                           .replace("$NOTICES", json.dumps(DEBIT_NOTICES_ARG)))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM cancels the run like Ctrl-C does, so the processes and the database go too.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    admin = os.environ.get("DATABASE_URL") or private_postgres()
    name = f"mpp_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    dsn = urlunsplit(urlsplit(admin)._replace(path="/" + name))
    await migrate.migrate(dsn)
    if args.history:
        await seed_history(dsn, args.history)
    procs = Processes(ROOT / ".data/bench-logs")
    try:
        return await measure(args, dsn, procs)
    finally:
        procs.stop()
        if not args.keep_db:
            conn = await asyncpg.connect(admin)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


async def measure(args: argparse.Namespace, dsn: str, procs: Processes) -> dict[str, Any]:
    sim_port, *server_ports = free_ports(1 + 2 * args.workers)
    sim = f"http://127.0.0.1:{sim_port}"
    wallets, kaspis = [], []
    sim_proc = procs.start("simulator", [sys.executable, "-m", "mpp_server", "simulator"],
                           {"SIMULATOR_LISTEN": f"127.0.0.1:{sim_port}",
                            "SIM_CALLER_NAMES": CALLER})
    servers = []
    for i in range(args.workers):
        wallet_port, kaspi_port = server_ports[2 * i], server_ports[2 * i + 1]
        wallets.append(f"http://127.0.0.1:{wallet_port}")
        kaspis.append(f"http://127.0.0.1:{kaspi_port}")
        program = (["-m", "bench.cpu_profile", str(procs.log_dir / f"server{i}.prof")]
                   if args.profile else ["-m", "mpp_server"])
        servers.append(procs.start(f"server{i}", [sys.executable, *program, "serve"], {
            "DATABASE_URL": dsn, "KASPI_BASE_URL": sim, "KASPI_CALLER_NAME": CALLER,
            "WALLET_API_TOKENS": TOKEN, "WALLET_LISTEN": f"127.0.0.1:{wallet_port}",
            "DEPOSIT_API_TOKENS": DEPOSIT_TOKEN, "DEPOSIT_MAX_AMOUNT": BENCH_DEPOSIT,
            "KASPI_LISTEN": f"127.0.0.1:{kaspi_port}", "DB_QUERY_METRICS": "true",
            "DB_POOL_MAX": str(args.pool), "LOG_LEVEL": "WARNING",
            # The load deposits far over any balance cap: measure without limits.
            "LIMITS_MCI": "{}"}))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await wait_ready(http, sim + "/sim/healthz", procs, sim_proc)
        for base, server in zip(wallets, servers, strict=True):
            await wait_ready(http, base + "/readyz", procs, server)
        load = Load(http, wallets, kaspis, sim)
        customers = [f"77{i:010d}" for i in range(args.concurrency)]
        await gather_limited([
            load.post(f"{load.wallet()}/v1/accounts/{c}/deposits",
                      {"depositId": f"bench-{c}", "amount": BENCH_DEPOSIT},
                      {"Authorization": f"Bearer {DEPOSIT_TOKEN}"})
            for c in customers])
        qr_count = int(args.duration * args.expected_rate)
        qr_pool = await gather_limited([load.new_qr("Dynamic", "100.00")
                                        for _ in range(qr_count)])
        static_qrs = dict(zip(customers, await gather_limited(
            [load.new_qr("Static") for _ in customers]), strict=True))
        completed: list[tuple[str, str, str]] = []

        meter = CpuMeter({"server processes": [p.pid for p in procs.procs[1:]],
                          "simulator": [procs.procs[0].pid]})
        queries_before, xacts_before = await scrape_counter(
            http, wallets, "mpp_db_queries_total"), await xacts(dsn)
        storage_before = await storage.snapshot(dsn)
        meter.begin()
        dynamic = await payments_phase(load, "dynamic", customers, args.duration, qr_pool,
                                       None, completed)
        static = await payments_phase(load, "static", customers, args.duration, None,
                                      static_qrs, completed)
        paid = dynamic.done + static.done + dynamic.failed + static.failed
        payment_cpu = meter.per_operation_ms(paid)
        storage_use = await storage.per_payment(dsn, storage_before, dynamic.done + static.done)
        queries = await scrape_counter(http, wallets, "mpp_db_queries_total") - queries_before
        transactions = await xacts(dsn) - xacts_before
        meter.begin()
        refunds = await refunds_phase(load, completed, args.duration, args.concurrency)
        # The same path with few customers: latency without the queueing of a saturated box.
        light = await payments_phase(load, "light", customers[:args.light_concurrency],
                                     args.duration / 2, None, static_qrs, [])
        refund_cpu = meter.per_operation_ms(refunds.done + refunds.failed)
        echo = await echo_phase(http, procs, args.duration, args.concurrency)
    pg = await pg_insert_phase(dsn, args.duration, args.pg_connections)
    conn = await asyncpg.connect(dsn)
    try:
        report = await ledger.check_invariants(conn)
        pending = await conn.fetchval("SELECT count(*) FROM payments WHERE status = 'PENDING'")
    finally:
        await conn.close()
    payments_rate = (dynamic.done + static.done) / (dynamic.elapsed_s + static.elapsed_s)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {"duration_s": args.duration, "concurrency": args.concurrency,
                     "server_processes": args.workers, "db_pool_max": args.pool},
        "payments_per_s": round(payments_rate, 1),
        "dynamic": summary(dynamic), "static": summary(static),
        "refunds": summary(refunds),
        "confirm_latency_ms": latency_ms(dynamic.confirm_s + static.confirm_s),
        "scan_latency_ms": latency_ms(dynamic.scan_s + static.scan_s),
        "light_load": {"concurrency": args.light_concurrency, "per_s": round(light.rate, 1),
                       "confirm_latency_ms": latency_ms(light.confirm_s),
                       "scan_latency_ms": latency_ms(light.scan_s), "failed": light.failed},
        "cpu_ms_per_payment": payment_cpu,
        "cpu_ms_per_refund": refund_cpu,
        "db_round_trips_per_payment": round(queries / paid, 2) if paid else None,
        "db_transactions_per_payment": round(transactions / paid, 2) if paid else None,
        "limits": {"echo_req_per_s": round(echo.rate, 1),
                   "echo_latency_ms": latency_ms(echo.confirm_s),
                   "pg_insert_commits_per_s": round(pg.rate, 1)},
        "ratios": {"payments_to_echo": round(payments_rate / echo.rate, 4) if echo.rate else None,
                   "payments_to_pg_commits": round(payments_rate / pg.rate, 4)
                   if pg.rate else None},
        "invariants": {"ok": report.ok, **report.__dict__, "pending_left": pending},
        "storage": storage_use,
    }


def summary(phase: Phase) -> dict[str, Any]:
    return {"done": phase.done, "failed": phase.failed, "elapsed_s": round(phase.elapsed_s, 2),
            "per_s": round(phase.rate, 1), "errors": phase.errors,
            "latency_ms": latency_ms(phase.confirm_s)}


def table(result: dict[str, Any]) -> str:
    rows = [
        ("complete payments/s (Dynamic+Static)", result["payments_per_s"]),
        ("  Dynamic payments/s", result["dynamic"]["per_s"]),
        ("  Static payments/s", result["static"]["per_s"]),
        ("refunds/s", result["refunds"]["per_s"]),
        ("confirm latency p50/p95/p99 ms", "/".join(
            str(v) for v in result["confirm_latency_ms"].values())),
        ("scan latency p50/p95/p99 ms", "/".join(
            str(v) for v in result["scan_latency_ms"].values())),
        (f"light load ({result['light_load']['concurrency']} customers) payments/s",
         result["light_load"]["per_s"]),
        ("  confirm latency p50/p95/p99 ms", "/".join(
            str(v) for v in result["light_load"]["confirm_latency_ms"].values())),
        ("  scan latency p50/p95/p99 ms", "/".join(
            str(v) for v in result["light_load"]["scan_latency_ms"].values())),
        ("DB round trips per payment", result["db_round_trips_per_payment"]),
        ("DB transactions per payment", result["db_transactions_per_payment"]),
        ("limit: aiohttp JSON echo req/s", result["limits"]["echo_req_per_s"]),
        ("limit: PostgreSQL insert commits/s", result["limits"]["pg_insert_commits_per_s"]),
        ("payments / echo", result["ratios"]["payments_to_echo"]),
        ("payments / PG commits", result["ratios"]["payments_to_pg_commits"]),
        *((f"CPU ms per payment: {k}", v) for k, v in result["cpu_ms_per_payment"].items()),
        *((f"CPU ms per refund: {k}", v) for k, v in result["cpu_ms_per_refund"].items()),
        ("failed payments / refunds", f"{result['dynamic']['failed'] + result['static']['failed']}"
                                      f" / {result['refunds']['failed']}"),
        ("ledger invariants", "hold" if result["invariants"]["ok"] else "BROKEN"),
        *storage.table_rows(result["storage"]),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="concurrent customers (16 is this 2-core box's best rate)")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--pool", type=int, default=20, help="DB pool per server process")
    parser.add_argument("--pg-connections", type=int, default=16)
    parser.add_argument("--light-concurrency", type=int, default=4,
                        help="customers in the light-load latency phase")
    parser.add_argument("--expected-rate", type=float, default=1500.0,
                        help="Dynamic QR codes prepared per second of the Dynamic phase")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/latest.json")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds, small load: proves the bench runs (make test)")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--history", type=int, default=5000,
                        help="completed payments (a quarter refunded) in the database before "
                             "the run, then ANALYZE: a live database, not an empty one "
                             "(0: start empty)")
    parser.add_argument("--profile", action="store_true",
                        help="run the servers under cProfile timed by CPU, not wall clock "
                             "(.data/bench-logs/serverN.prof; bench/cpu_profile.py; "
                             "slower: for where the time goes, not for the figures)")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.concurrency, args.workers, args.pool = 1.0, 4, 1, 5
        args.expected_rate, args.pg_connections, args.light_concurrency = 200.0, 2, 2
        args.history = 100
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        try:
            result = runner.run(bench(args))
        except asyncio.CancelledError:
            print("bench: stopped (SIGTERM); its processes and database are gone",
                  file=sys.stderr)
            return 143
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nwritten: {args.out}")
    ok = result["invariants"]["ok"] and result["payments_per_s"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

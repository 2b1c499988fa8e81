"""The benchmark's load generator: wallet customers paying (scan → confirm → COMPLETED
with a receipt), Kaspi refunding through POST /refund, and the same loop driving the
machine's yardsticks (the echo server, PostgreSQL single-row insert commits)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from bench.measure import CpuMeter, per_operation_ms

RECEIPT = "https://receipt-test.kaspi.kz/web?extTranId=QRBENCH"
# A completed payment: (paymentId, customerId, amount), what a refund needs.
Paid = tuple[str, str, str]


@dataclass
class Phase:
    name: str
    started: float = 0.0
    elapsed_s: float = 0.0
    done: int = 0
    failed: int = 0
    scan_s: list[float] = field(default_factory=list)
    confirm_s: list[float] = field(default_factory=list)
    # The confirms of the watched customer (--month-history's): its own latency.
    watched_confirm_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, other: Phase) -> None:
        """`other`'s payments counted in this phase too (a phase run in slices)."""
        self.elapsed_s += other.elapsed_s
        self.done += other.done
        self.failed += other.failed
        self.scan_s += other.scan_s
        self.confirm_s += other.confirm_s
        for what, count in other.errors.items():
            self.errors[what] = self.errors.get(what, 0) + count

    def error(self, what: str) -> None:
        self.failed += 1
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0


async def gather_limited(coros: list[Awaitable[Any]], limit: int = 32) -> list[Any]:
    """asyncio.gather with at most `limit` in flight (set-up must not flood a listener)."""
    sem = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[Any]) -> Any:
        async with sem:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


class Load:
    """The wallet and Kaspi, as HTTP clients of the servers and of the simulator."""

    def __init__(self, http: aiohttp.ClientSession, wallets: list[str], kaspis: list[str],
                 sim: str, token: str, watched: str | None = None) -> None:
        self.http, self.wallets, self.kaspis, self.sim = http, wallets, kaspis, sim
        self.auth = {"Authorization": f"Bearer {token}"}
        self.watched = watched
        self._next = 0

    def wallet(self) -> str:
        # Round-robin over the server processes (what SO_REUSEPORT or a balancer does).
        self._next += 1
        return self.wallets[self._next % len(self.wallets)]

    async def post(self, url: str, body: Any, headers: dict[str, str] | None = None
                   ) -> tuple[int, Any]:
        async with self.http.post(url, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def put(self, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        async with self.http.put(url, json=body, headers=headers) as resp:
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
                  completed: list[Paid]) -> None:
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
        if customer == self.watched:
            phase.watched_confirm_s.append(phase.confirm_s[-1])
        while status == 200 and paid["status"] == "PENDING":
            await asyncio.sleep(0.05)
            status, paid = await self.get(f"{base}/v1/payments/{payment_id}")
        if status != 200 or paid["status"] != "COMPLETED" or not paid.get("linkReceipt"):
            phase.error(f"confirm {status} {paid.get('status') or paid.get('error')}")
            return
        phase.done += 1
        completed.append((payment_id, customer, paid["amount"]))


async def run_phase(phase: Phase, duration_s: float, concurrency: int,
                    job: Callable[[int], Awaitable[bool]]) -> Phase:
    """Run `job(worker_index)` in `concurrency` loops until `duration_s` has passed (or
    a job says there is no more work)."""
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
                         completed: list[Paid]) -> Phase:
    """Each customer pays in a loop: Dynamic QR codes from `qr_pool` (used once each), or
    the customer's own Static QR code with an amount of 100 tenge."""
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


async def alone_phases(load: Load, customers: list[str], slice_s: float, rounds: int,
                       static_qrs: dict[str, str], meter: CpuMeter
                       ) -> list[tuple[Phase, dict[str, float]]]:
    """Each of `customers` paying alone, one payment after another, in turns of
    `slice_s` (`rounds` turns each, so all see the same machine): by customer, its
    phase and the CPU ms per payment by process."""
    phases = [Phase(f"alone {c}") for c in customers]
    spent: list[dict[str, float]] = [{} for _ in customers]
    for _ in range(rounds):
        for i, customer in enumerate(customers):
            meter.begin()
            phases[i].add(await payments_phase(load, "alone", [customer], slice_s, None,
                                               static_qrs, []))
            for name, s in meter.spent_s().items():
                spent[i][name] = spent[i].get(name, 0.0) + s
    return [(phase, per_operation_ms(cpu, phase.done + phase.failed))
            for phase, cpu in zip(phases, spent, strict=True)]


async def refunds_phase(load: Load, completed: list[Paid], duration_s: float,
                        concurrency: int) -> Phase:
    """Kaspi refunds completed payments in full through POST /refund."""
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
                "refundId": "BR" + uuid.uuid4().hex[:24], "linkReceipt": RECEIPT}
        started = time.perf_counter()
        status, answer = await load.post(url, body, {"X-Request-ID": uuid.uuid4().hex})
        latencies.append(time.perf_counter() - started)
        if status == 200 and answer["result"]["resultCode"] == "SUCCESS":
            phase.done += 1
        else:
            phase.error(f"refund {status} {answer.get('result', {}).get('resultCode')}")
        return True

    return await run_phase(phase, duration_s, concurrency, job)


async def echo_phase(http: aiohttp.ClientSession, url: str, duration_s: float,
                     concurrency: int) -> Phase:
    """The echo server driven like the payments: a scan-sized JSON body each time."""
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


async def pg_insert_phase(dsn: str, duration_s: float, connections: int,
                          meter: CpuMeter) -> tuple[Phase, dict[str, float]]:
    """Single-row INSERT commits, one connection per worker held for the phase (the
    servers' pools send no reset query either): PostgreSQL's commit rate, and CPU ms per
    commit (`meter`, read before the connections close: a backend's CPU is gone with
    it)."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, "
                       "v bigint NOT NULL)")
    await conn.close()
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]
    phase = Phase("pg_insert")

    async def job(i: int) -> bool:
        await conns[i].execute("INSERT INTO bench_commits (v) VALUES ($1)", i)
        phase.done += 1
        return True

    try:
        meter.begin()
        await run_phase(phase, duration_s, connections, job)
        return phase, meter.per_operation_ms(phase.done)
    finally:
        for c in conns:
            await c.close()

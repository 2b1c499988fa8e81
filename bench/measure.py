"""The benchmark's measurements: CPU seconds by process (from /proc, so independent of
whatever else the machine runs), latency percentiles, the servers' statement counter and
PostgreSQL's transaction counter.

PostgreSQL's CPU is that of the bench's own cluster only: its postmaster (the parent of
a backend of the bench's database) and the postmaster's children. Other clusters on the
machine (other checkouts' tests) are not the bench's work; before issue 28 they were
counted too, which inflated and scattered the figure on a shared machine."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

import aiohttp
import asyncpg

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (0 when it is gone)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state, ppid, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def parent_pid(pid: int) -> int | None:
    try:
        return int(_stat_fields(pid)[1])
    except OSError:
        return None


def cluster_pids(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, walwriter, checkpointer, ...)."""
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                if int(_stat_fields(int(entry.name))[1]) == postmaster:
                    pids.append(int(entry.name))
    return pids


async def postmaster_pid(dsn: str) -> int | None:
    """The postmaster of `dsn`'s server when it runs on this machine (else None: its CPU
    cannot be read from here)."""
    conn = await asyncpg.connect(dsn)
    try:
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        return parent_pid(backend)
    finally:
        await conn.close()


class CpuMeter:
    """CPU seconds spent by each part of the stack during a phase: where the time goes,
    independent of whatever else the machine is doing."""

    def __init__(self, parts: dict[str, list[int]], postmaster: int | None) -> None:
        self.parts = parts
        self.postmaster = postmaster
        self.start: dict[str, float] = {}
        self.pg_start: dict[int, float] = {}

    def _postgres_pids(self) -> list[int]:
        return [] if self.postmaster is None else cluster_pids(self.postmaster)

    def _now(self) -> dict[str, float]:
        now = {name: sum(cpu_s(p) for p in pids) for name, pids in self.parts.items()}
        usage = os.times()
        now["load generator"] = usage.user + usage.system
        return now

    def begin(self) -> None:
        self.start = self._now()
        self.pg_start = {pid: cpu_s(pid) for pid in self._postgres_pids()}

    def spent_s(self) -> dict[str, float]:
        """CPU seconds by part since `begin`."""
        end = self._now()
        spent = {name: end[name] - self.start[name] for name in end}
        if self.postmaster is not None:
            # Backends come and go: count what each one still alive spent since.
            spent["postgres"] = sum(cpu_s(pid) - self.pg_start.get(pid, 0.0)
                                    for pid in self._postgres_pids())
        return spent

    def per_operation_ms(self, operations: int) -> dict[str, float]:
        return per_operation_ms(self.spent_s(), operations)


def per_operation_ms(spent_s: dict[str, float], operations: int) -> dict[str, float]:
    return {name: round(s * 1000 / operations, 3)
            for name, s in spent_s.items()} if operations else {}


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def latency_ms(values: list[float]) -> dict[str, float]:
    return {f"p{p}": round(percentile(values, p) * 1000, 2) for p in (50, 95, 99)}


async def scrape_counter(http: aiohttp.ClientSession, wallets: list[str], name: str) -> float:
    """A counter summed over the server processes' /metrics."""
    total = 0.0
    for base in wallets:
        async with http.get(base + "/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


async def xacts(dsn: str) -> int:
    """Transactions committed and rolled back in the database so far."""
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()")
        return value
    finally:
        await conn.close()

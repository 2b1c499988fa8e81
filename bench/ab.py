"""`python -m bench.ab A B`: two versions of the server measured in one run, their phases
interleaved, so that both see the same machine (docs/performance.md, "Measuring a
change").

A and B are git revisions (exported with `git archive` into .data/ab/) or checkout
directories (`.` is this one, uncommitted changes included). Each gets a database of its
own on the bench's PostgreSQL, migrated by its own code and seeded by its own
`bench.setup.seed`, and a stack of its own (simulator and servers, run from its tree,
limits on as in `make bench`); both stacks stay up. Then, `--rounds` times, each side in
turn (A B, then B A, ...): its customers pay Static QR codes for `--phase-s` seconds
(saturated), Kaspi refunds what they paid, and a few customers pay at light load. Each
phase's CPU by process (bench/measure.py) is read while only its side is busy. The
report gives each figure's median over the rounds with its range, and B's change against
A; bench/results/ab-latest.json keeps every round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from bench import setup
from bench.load import Load, Paid, payments_phase, refunds_phase
from bench.measure import CpuMeter, latency_ms, postmaster_pid, scrape_counter
from mpp_server.devtools.devdb import ensure_database

AB_DIR = setup.ROOT / ".data/ab"
SEED = ("import asyncio, sys; from bench import setup; "
        "asyncio.run(setup.seed(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))")


def tree_of(version: str) -> Path:
    """A checkout directory as given, or revision `version` exported (once) into
    .data/ab/<commit>."""
    if Path(version).is_dir():
        return Path(version).resolve()
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{version}^{{commit}}"],
                            cwd=setup.ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    tree = AB_DIR / commit[:12]
    if not tree.exists():
        partial = tree.with_suffix(".partial")
        partial.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], cwd=setup.ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        partial.rename(tree)
    return tree


async def _run_in(tree: Path, args: list[str], env: dict[str, str] | None = None) -> None:
    """`python ARGS` in `tree` (its own code first on the path); killed if the run is."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=tree, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode:
        raise RuntimeError(f"{args[:3]} in {tree} failed:\n{out.decode(errors='replace')}")


async def prepared(tree: Path, dsn: str, args: argparse.Namespace,
                   month_customer: str) -> str:
    """A fresh database migrated and seeded by `tree`'s own code."""
    await _run_in(tree, ["-m", "mpp_server", "migrate"], {"DATABASE_URL": dsn})
    await _run_in(tree, ["-c", SEED, dsn, str(args.history), month_customer, "0"])
    return dsn


async def _drop(dsns: list[str]) -> None:
    conn = await asyncpg.connect(setup.admin_dsn())
    try:
        for dsn in dsns:
            name = urlsplit(dsn).path.lstrip("/")
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class Side:
    label: str
    tree: Path
    dsn: str
    stack: setup.Stack
    load: Load | None = None
    static_qrs: dict[str, str] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)


async def _round(side: Side, customers: list[str], args: argparse.Namespace,
                 http: aiohttp.ClientSession, postmaster: int | None) -> dict[str, Any]:
    assert side.load is not None
    meter = CpuMeter(side.stack.cpu_parts(), postmaster)
    completed: list[Paid] = []
    queries = await scrape_counter(http, side.stack.wallets, "mpp_db_queries_total")
    meter.begin()
    paid = await payments_phase(side.load, "static", customers, args.phase_s, None,
                                side.static_qrs, completed)
    attempts = paid.done + paid.failed
    payment_cpu = meter.per_operation_ms(attempts)
    queries = await scrape_counter(http, side.stack.wallets, "mpp_db_queries_total") - queries
    meter.begin()
    refunds = await refunds_phase(side.load, completed, args.phase_s, len(customers))
    refund_cpu = meter.per_operation_ms(refunds.done + refunds.failed)
    light = await payments_phase(side.load, "light", customers[:args.light_concurrency],
                                 args.phase_s / 2, None, side.static_qrs, [])
    return {"payments_per_s": round(paid.rate, 1), "failed": paid.failed + refunds.failed
            + light.failed, "errors": {**paid.errors, **refunds.errors, **light.errors},
            "cpu_ms_per_payment": {**payment_cpu, "total": sum(payment_cpu.values())},
            "cpu_ms_per_refund": {**refund_cpu, "total": sum(refund_cpu.values())},
            "round_trips_per_payment": queries / attempts if attempts else None,
            "confirm_latency_ms": latency_ms(paid.confirm_s),
            "light_confirm_latency_ms": latency_ms(light.confirm_s)}


def _figures(one: dict[str, Any]) -> dict[str, float]:
    """The figures of one round compared, by name."""
    out = {"payments/s": one["payments_per_s"],
           "round trips / payment": one["round_trips_per_payment"] or 0.0,
           "confirm p50 ms": one["confirm_latency_ms"]["p50"],
           "light confirm p50 ms": one["light_confirm_latency_ms"]["p50"],
           "light confirm p99 ms": one["light_confirm_latency_ms"]["p99"]}
    for what in ("payment", "refund"):
        cpu = one[f"cpu_ms_per_{what}"]
        for process, ms in cpu.items():
            out[f"CPU ms/{what}: {process}"] = ms
        # The control: the CPU of the processes whose work per operation is the same on
        # both sides (the simulator, the load generator). On a shared machine every
        # process's CPU per operation swings with the machine's load; relative to the
        # control, a side's own CPU is steadier.
        control = cpu.get("simulator", 0.0) + cpu.get("load generator", 0.0)
        for process in ("server processes", "postgres"):
            if control and process in cpu:
                out[f"{what}: {process} / control"] = cpu[process] / control
    return out


def summary(sides: list[Side]) -> dict[str, dict[str, Any]]:
    """Each figure's median and range over the rounds, by side; and B's change against
    A, round by round (the two phases of a round ran back to back, so they saw the same
    machine): the median of those changes and their range. The machine's load swings
    more between rounds than between the two phases of one, so the paired change is the
    figure to read."""
    a, b = ([_figures(r) for r in side.rounds] for side in sides)
    out: dict[str, dict[str, Any]] = {}
    for name in a[0]:
        row: dict[str, Any] = {}
        for side, rounds in zip(sides, (a, b), strict=True):
            values = [r[name] for r in rounds if name in r]
            row[side.label] = {"median": round(statistics.median(values), 3),
                               "min": round(min(values), 3), "max": round(max(values), 3)}
        changes = [100 * (rb[name] - ra[name]) / ra[name]
                   for ra, rb in zip(a, b, strict=True) if ra.get(name) and name in rb]
        row["change_pct"] = ({"median": round(statistics.median(changes), 1),
                              "min": round(min(changes), 1), "max": round(max(changes), 1)}
                             if changes else None)
        out[name] = row
    return out


def table(result: dict[str, dict[str, Any]], labels: list[str]) -> str:
    def cell(v: dict[str, float]) -> str:
        return f"{v['median']:g} [{v['min']:g}–{v['max']:g}]"

    width = max(len(n) for n in result)
    lines = [f"{'':{width}}  {labels[0]:>24}  {labels[1]:>24}  "
             "change, round by round: median [range] %"]
    for name, row in result.items():
        change = "" if row["change_pct"] is None else cell(row["change_pct"])
        lines.append(f"{name:{width}}  {cell(row[labels[0]]):>24}  {cell(row[labels[1]]):>24}"
                     f"  {change}")
    return "\n".join(lines)


async def ab(args: argparse.Namespace) -> dict[str, Any]:
    customers = setup.customers(args.concurrency)
    run_id = setup.TOKENS.wallet[-6:].lower().replace("-", "x").replace("_", "y")
    sides: list[Side] = []
    dsns: list[str] = []
    try:
        for label, version in (("A", args.a), ("B", args.b)):
            tree = tree_of(version)
            dsns.append(await ensure_database(setup.admin_dsn(),
                                              f"mpp_ab_{label.lower()}_{run_id}"))
            dsn = await prepared(tree, dsns[-1], args, customers[0])
            stack = setup.start_stack(dsn, args, setup.LOG_DIR / f"ab-{label}", tree)
            sides.append(Side(f"{label} ({version})", tree, dsn, stack))
        postmaster = await postmaster_pid(sides[0].dsn)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for side in sides:
                await setup.wait_ready(side.stack)
                side.load = Load(http, side.stack.wallets, side.stack.kaspis,
                                 side.stack.sim_url, setup.TOKENS.wallet)
                _, side.static_qrs = await setup.prepare_customers(side.load, customers, 0)
            for r in range(args.rounds):
                for side in (sides if r % 2 == 0 else sides[::-1]):
                    side.rounds.append(await _round(side, customers, args, http, postmaster))
                    print(f"round {r + 1} {side.label}: "
                          f"{json.dumps(_figures(side.rounds[-1]))}", file=sys.stderr)
    finally:
        for side in sides:
            side.stack.processes.stop()
        await _drop(dsns)
    return {"a": args.a, "b": args.b, "rounds": args.rounds, "phase_s": args.phase_s,
            "summary": summary(sides), "by_round": {s.label: s.rounds for s in sides}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("a", help="the base: a git revision or a checkout directory")
    parser.add_argument("b", help="the change: a git revision or a checkout directory")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--phase-s", type=float, default=8.0,
                        help="seconds of each side's saturated phase per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--light-concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=20)
    parser.add_argument("--history", type=int, default=5000)
    parser.add_argument("--limits-mci", default=setup.LIMITS_MCI)
    parser.add_argument("--out", type=Path, default=setup.ROOT / "bench/results/ab-latest.json")
    args = parser.parse_args()
    args.profile = False
    return args


def main() -> int:
    args = parse_args()
    result = setup.run_to_end(ab(args), "bench.ab", "its processes and databases are gone")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    labels = list(result["by_round"])
    print(table(result["summary"], labels))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: complete payments per second through the real stack, and what limits them.

Set-up (bench/setup.py): the private PostgreSQL (MPP_DEVDB_PORT; or DATABASE_URL's
server) with a fresh database and a history made by the server's own steps, the Kaspi
simulator and W server processes started by the dev launcher, limits on. Load
(bench/load.py): many wallet customers at once, each identified and deposited once,
then scan → confirm → COMPLETED with linkReceipt (Dynamic, then Static), then Kaspi's
POST /refund; the same loop drives the machine's yardsticks (an echo server, PostgreSQL
single-row insert commits). Measurement (bench/measure.py): CPU per operation by
process, latencies, round trips; the ledger invariants checked after; the webhook
delivery lag at light load (bench/webhook_lag.py). Writes
bench/results/latest.json and prints a table (bench/report.py). `--smoke` is a
few-second run for `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import setup, storage, webhook_lag
from bench.load import (
    Load,
    Paid,
    alone_phases,
    echo_phase,
    payments_phase,
    pg_insert_phase,
    refunds_phase,
)
from bench.measure import CpuMeter, postmaster_pid, scrape_counter, xacts
from bench.report import Cpu, Run, result, table
from mpp_server.devtools.devdb import fresh_database
from mpp_server.domain import ledger


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    customers = setup.customers(args.concurrency)
    async with fresh_database(setup.admin_dsn(), "mpp_bench", keep=args.keep_db) as dsn:
        await setup.seed(dsn, args.history, customers[0], args.month_history)
        stack = setup.start_stack(dsn, args)
        try:
            run = await measure(args, dsn, stack, customers)
        finally:
            stack.processes.stop()
    return result(args, run, customers[0])


async def measure(args: argparse.Namespace, dsn: str, stack: setup.Stack,
                  customers: list[str]) -> Run:
    connector = aiohttp.TCPConnector(limit=0)
    postmaster = await postmaster_pid(dsn)
    async with aiohttp.ClientSession(connector=connector) as http:
        await setup.wait_ready(stack)
        load = Load(http, stack.wallets, stack.kaspis, stack.sim_url, setup.TOKENS.wallet,
                    watched=customers[0])
        qr_pool, static_qrs = await setup.prepare_customers(
            load, customers, int(args.duration * args.expected_rate))
        completed: list[Paid] = []

        meter = CpuMeter(stack.cpu_parts(), postmaster)
        queries_before, xacts_before = await scrape_counter(
            http, stack.wallets, "mpp_db_queries_total"), await xacts(dsn)
        storage_before = await storage.snapshot(dsn)
        meter.begin()
        dynamic = await payments_phase(load, "dynamic", customers, args.duration, qr_pool,
                                       None, completed)
        static = await payments_phase(load, "static", customers, args.duration, None,
                                      static_qrs, completed)
        paid = dynamic.done + static.done + dynamic.failed + static.failed
        payment_cpu = meter.per_operation_ms(paid)
        queries = await scrape_counter(http, stack.wallets,
                                       "mpp_db_queries_total") - queries_before
        transactions = await xacts(dsn) - xacts_before
        # After the counts above: it waits for the journal's last batches.
        storage_use = await storage.per_payment(dsn, storage_before, dynamic.done + static.done)
        meter.begin()
        refunds = await refunds_phase(load, completed, args.duration, args.concurrency)
        refund_cpu = meter.per_operation_ms(refunds.done + refunds.failed)
        # The same path with few customers: latency without the queueing of a saturated box.
        light = await payments_phase(load, "light", customers[:args.light_concurrency],
                                     args.duration / 2, None, static_qrs, [])
        # The first customer (--month-history's) paying alone, one payment after another,
        # in turns with the second (no history before the run): each one's latency and
        # the database's CPU for each of its payments, on the same machine.
        (alone, alone_cpu), (reference, reference_cpu) = await alone_phases(
            load, customers[:2], args.duration / 8, 4, static_qrs, meter)
        webhooks = await webhook_lag.measure(http, stack.processes, stack.sim_url, stack.tls,
                                             setup.admin_dsn(), args.duration / 2)
        echo_url = await asyncio.to_thread(setup.start_echo, stack.processes)
        echo_meter = CpuMeter({"echo server": [stack.processes.procs["echo"].pid]}, None)
        echo_meter.begin()
        echo = await echo_phase(http, echo_url, args.duration, args.concurrency)
        echo_cpu = echo_meter.per_operation_ms(echo.done)
    pg, commit_cpu = await pg_insert_phase(dsn, args.duration, args.pg_connections,
                                           CpuMeter({}, postmaster))
    conn = await asyncpg.connect(dsn)
    try:
        report = await ledger.check_invariants(conn)
        pending = await conn.fetchval("SELECT count(*) FROM payments WHERE status = 'PENDING'")
    finally:
        await conn.close()
    return Run(dynamic, static, refunds, light, alone, reference, echo, pg,
               Cpu(payment_cpu, refund_cpu, alone_cpu, reference_cpu, echo_cpu, commit_cpu),
               queries, transactions, report, pending, webhooks, storage_use)


def parse_args() -> argparse.Namespace:
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
    parser.add_argument("--out", type=Path, default=setup.ROOT / "bench/results/latest.json")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds, small load: proves the bench runs (make test)")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--history", type=int, default=5000,
                        help="completed payments (a quarter refunded) in the database before "
                             "the run, then ANALYZE: a live database, not an empty one "
                             "(0: start empty)")
    parser.add_argument("--month-history", type=int, default=0, metavar="N",
                        help="the first customer has N payments this month before the run; "
                             "the report shows that customer's confirm latency")
    parser.add_argument("--limits-mci", default=setup.LIMITS_MCI, metavar="JSON",
                        help="the servers' LIMITS_MCI (default: limits on, the bench's "
                             "customers identified FULL; '{}' for none)")
    parser.add_argument("--profile", action="store_true",
                        help="run the servers under cProfile timed by CPU, not wall clock "
                             "(.data/bench-logs/serverN.prof; bench/cpu_profile.py; "
                             "slower: for where the time goes, not for the figures)")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.concurrency, args.workers, args.pool = 1.0, 4, 1, 5
        args.expected_rate, args.pg_connections, args.light_concurrency = 200.0, 2, 2
        args.history = 100
    if args.concurrency < 2:
        parser.error("--concurrency must be 2 or more (the first two customers pay in turns "
                     "alone: --month-history's and one without it)")
    return args


def main() -> int:
    args = parse_args()
    figures = setup.run_to_end(bench(args), "bench", "its processes and database are gone")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(table(figures))
    print(f"\nwritten: {args.out}")
    ok = figures["invariants"]["ok"] and figures["payments_per_s"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

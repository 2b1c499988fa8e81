"""The benchmark's report: the figures of a run as JSON (bench/results/latest.json) and
as the table `make bench` prints."""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

from bench import storage
from bench.load import Phase
from bench.measure import latency_ms
from mpp_server.domain.ledger import InvariantReport


@dataclass
class Cpu:
    """CPU ms per operation by process (bench/measure.py CpuMeter), of each metered phase."""

    payment: dict[str, float]    # the saturated Dynamic and Static phases
    refund: dict[str, float]
    alone: dict[str, float]      # the first customer paying alone (--month-history's)
    reference: dict[str, float]  # the second, in turns with it
    exchange: dict[str, float]   # one echo exchange: the echo server, the load generator
    commit: dict[str, float]     # one insert commit: PostgreSQL, the load generator


# What a complete payment cannot do without (docs/performance.md, "The floor"): 4 HTTP
# exchanges (the wallet's scan and confirm to the server, the server's scan and
# notifyPayment to Kaspi) and 3 commits (the scanned payment; the debit with its outbox
# row; Kaspi's answer), each step's commit before the next step.
EXCHANGES_PER_PAYMENT = 4
COMMITS_PER_PAYMENT = 3


def floor_ms(cpu: Cpu) -> dict[str, float] | None:
    """The CPU of 4 exchanges and 3 commits measured in the same run, by process: the
    server is the answering side of 2 exchanges and the calling side of 2, and the
    client of the 3 commits; PostgreSQL does the commits."""
    if not cpu.exchange or not cpu.commit or "postgres" not in cpu.commit:
        return None
    answer, call = cpu.exchange["echo server"], cpu.exchange["load generator"]
    commit_client, commit_pg = cpu.commit["load generator"], cpu.commit["postgres"]
    half = EXCHANGES_PER_PAYMENT // 2
    floors = {"server processes": half * (answer + call) + COMMITS_PER_PAYMENT * commit_client,
              "postgres": COMMITS_PER_PAYMENT * commit_pg,
              "simulator": half * answer,      # answers the server's scan and notify
              "load generator": half * call}   # calls the wallet's scan and confirm
    return {name: round(value, 3) for name, value in floors.items()} | {
        "total": round(sum(floors.values()), 3)}


@dataclass
class Run:
    """What the phases of one run measured."""

    dynamic: Phase
    static: Phase
    refunds: Phase
    light: Phase
    alone: Phase
    reference: Phase
    echo: Phase
    pg: Phase
    cpu: Cpu
    queries: float
    transactions: int
    invariants: InvariantReport
    pending_left: int
    webhooks: dict[str, Any]  # bench/webhook_lag.py
    storage: dict[str, Any]  # bench/storage.py

    @property
    def paid(self) -> int:
        """Payments attempted in the saturated phases (failed ones cost CPU too)."""
        return self.dynamic.done + self.static.done + self.dynamic.failed + self.static.failed

    @property
    def payments_per_s(self) -> float:
        done = self.dynamic.done + self.static.done
        return done / (self.dynamic.elapsed_s + self.static.elapsed_s)


def summary(phase: Phase) -> dict[str, Any]:
    return {"done": phase.done, "failed": phase.failed, "elapsed_s": round(phase.elapsed_s, 2),
            "per_s": round(phase.rate, 1), "errors": phase.errors,
            "latency_ms": latency_ms(phase.confirm_s)}


def _alone(phase: Phase, cpu: dict[str, float]) -> dict[str, Any]:
    return {"payments": phase.done, "failed": phase.failed, "per_s": round(phase.rate, 1),
            "confirm_latency_ms": latency_ms(phase.confirm_s), "cpu_ms_per_payment": cpu}


def _with_total(cpu: dict[str, float]) -> dict[str, float]:
    return {**cpu, "total": round(sum(cpu.values()), 3)} if cpu else cpu


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def result(args: argparse.Namespace, run: Run, month_customer: str) -> dict[str, Any]:
    rate = run.payments_per_s
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {"duration_s": args.duration, "concurrency": args.concurrency,
                     "server_processes": args.workers, "db_pool_max": args.pool,
                     "history": args.history, "month_history": args.month_history,
                     "limits_mci": args.limits_mci},
        "payments_per_s": round(rate, 1),
        "dynamic": summary(run.dynamic), "static": summary(run.static),
        "refunds": summary(run.refunds),
        "confirm_latency_ms": latency_ms(run.dynamic.confirm_s + run.static.confirm_s),
        "scan_latency_ms": latency_ms(run.dynamic.scan_s + run.static.scan_s),
        "light_load": {"concurrency": args.light_concurrency,
                       "per_s": round(run.light.rate, 1),
                       "confirm_latency_ms": latency_ms(run.light.confirm_s),
                       "scan_latency_ms": latency_ms(run.light.scan_s),
                       "failed": run.light.failed},
        "month_history": {
            "customer": month_customer, "payments_this_month": args.month_history,
            "confirms": len(run.dynamic.watched_confirm_s) + len(run.static.watched_confirm_s),
            "confirm_latency_ms": latency_ms(run.dynamic.watched_confirm_s
                                             + run.static.watched_confirm_s),
            "light_confirm_latency_ms": latency_ms(run.light.watched_confirm_s),
            "alone": _alone(run.alone, run.cpu.alone),
            "reference_alone": _alone(run.reference, run.cpu.reference)},
        "webhooks_light_load": run.webhooks,
        "cpu_ms_per_payment": _with_total(run.cpu.payment),
        "cpu_ms_per_refund": _with_total(run.cpu.refund),
        "floor_cpu_ms_per_payment": floor_ms(run.cpu),
        "db_round_trips_per_payment": round(run.queries / run.paid, 2) if run.paid else None,
        "db_transactions_per_payment": (round(run.transactions / run.paid, 2)
                                        if run.paid else None),
        "limits": {"echo_req_per_s": round(run.echo.rate, 1),
                   "echo_latency_ms": latency_ms(run.echo.confirm_s),
                   "echo_cpu_ms_per_exchange": run.cpu.exchange,
                   "pg_insert_commits_per_s": round(run.pg.rate, 1),
                   "pg_insert_cpu_ms_per_commit": run.cpu.commit},
        "ratios": {"payments_to_echo": _ratio(rate, run.echo.rate),
                   "payments_to_pg_commits": _ratio(rate, run.pg.rate)},
        "invariants": {"ok": run.invariants.ok, **run.invariants.__dict__,
                       "pending_left": run.pending_left},
        "storage": run.storage,
    }


def _percentiles(latencies: dict[str, float]) -> str:
    return "/".join(str(v) for v in latencies.values())


def table(result: dict[str, Any]) -> str:
    month = result["month_history"]
    rows = [
        ("complete payments/s (Dynamic+Static)", result["payments_per_s"]),
        ("  Dynamic payments/s", result["dynamic"]["per_s"]),
        ("  Static payments/s", result["static"]["per_s"]),
        ("refunds/s", result["refunds"]["per_s"]),
        ("confirm latency p50/p95/p99 ms", _percentiles(result["confirm_latency_ms"])),
        ("scan latency p50/p95/p99 ms", _percentiles(result["scan_latency_ms"])),
        (f"light load ({result['light_load']['concurrency']} customers) payments/s",
         result["light_load"]["per_s"]),
        ("  confirm latency p50/p95/p99 ms",
         _percentiles(result["light_load"]["confirm_latency_ms"])),
        ("  scan latency p50/p95/p99 ms", _percentiles(result["light_load"]["scan_latency_ms"])),
        (f"customer with {month['payments_this_month']} payments this month: confirm "
         f"p50/p95/p99 ms ({month['confirms']} confirms)",
         _percentiles(month["confirm_latency_ms"])),
        ("  the same at light load", _percentiles(month["light_confirm_latency_ms"])),
        (f"  the same paying alone ({month['alone']['per_s']}/s)",
         _percentiles(month["alone"]["confirm_latency_ms"])),
        ("  PostgreSQL CPU ms per payment paying alone",
         month["alone"]["cpu_ms_per_payment"].get("postgres")),
        (f"  in turns, a customer with none: alone ({month['reference_alone']['per_s']}/s)",
         _percentiles(month["reference_alone"]["confirm_latency_ms"])),
        ("  its PostgreSQL CPU ms per payment",
         month["reference_alone"]["cpu_ms_per_payment"].get("postgres")),
        (f"webhook delivery lag p50/p95/p99 ms ({result['webhooks_light_load']['concurrency']}"
         " customers)", _percentiles({k: result["webhooks_light_load"]["lag_ms"][k]
                                      for k in ("p50", "p95", "p99")})),
        ("DB round trips per payment", result["db_round_trips_per_payment"]),
        ("DB transactions per payment", result["db_transactions_per_payment"]),
        ("limit: aiohttp JSON echo req/s", result["limits"]["echo_req_per_s"]),
        ("limit: PostgreSQL insert commits/s", result["limits"]["pg_insert_commits_per_s"]),
        ("payments / echo", result["ratios"]["payments_to_echo"]),
        ("payments / PG commits", result["ratios"]["payments_to_pg_commits"]),
        *((f"CPU ms per payment: {k}", v) for k, v in result["cpu_ms_per_payment"].items()),
        *((f"CPU ms per refund: {k}", v) for k, v in result["cpu_ms_per_refund"].items()),
        *((f"floor: CPU ms per payment: {k}", v)
          for k, v in (result["floor_cpu_ms_per_payment"] or {}).items()),
        ("failed payments / refunds", f"{result['dynamic']['failed'] + result['static']['failed']}"
                                      f" / {result['refunds']['failed']}"),
        ("ledger invariants", "hold" if result["invariants"]["ok"] else "BROKEN"),
        *storage.table_rows(result["storage"]),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)

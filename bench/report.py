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
class Run:
    """What the phases of one run measured."""

    dynamic: Phase
    static: Phase
    refunds: Phase
    light: Phase
    echo: Phase
    pg: Phase
    payment_cpu: dict[str, float]
    refund_cpu: dict[str, float]
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
            "light_confirm_latency_ms": latency_ms(run.light.watched_confirm_s)},
        "webhooks_light_load": run.webhooks,
        "cpu_ms_per_payment": run.payment_cpu,
        "cpu_ms_per_refund": run.refund_cpu,
        "db_round_trips_per_payment": round(run.queries / run.paid, 2) if run.paid else None,
        "db_transactions_per_payment": (round(run.transactions / run.paid, 2)
                                        if run.paid else None),
        "limits": {"echo_req_per_s": round(run.echo.rate, 1),
                   "echo_latency_ms": latency_ms(run.echo.confirm_s),
                   "pg_insert_commits_per_s": round(run.pg.rate, 1)},
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
        ("failed payments / refunds", f"{result['dynamic']['failed'] + result['static']['failed']}"
                                      f" / {result['refunds']['failed']}"),
        ("ledger invariants", "hold" if result["invariants"]["ok"] else "BROKEN"),
        *storage.table_rows(result["storage"]),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)

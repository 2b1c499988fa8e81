"""`python -m mpp_server reconcile`: reconcile our books against a Kaspi registry, and
`python -m mpp_server reconcile ack ITEM_ID --by NAME --reason TEXT`: a person handled a
discrepancy.

Exit status: 0 nothing open (everything matched, or each discrepancy was resolved or
acknowledged since; also for a file imported before), 1 open discrepancies, 2 bad input
(nothing written: a refused file, the same file under another period, an unknown or
already resolved item), 3 the database or the simulator could not be reached.
The text report masks customer ids as the server's log does (it goes to a log file);
`--json` is the API's answer, ids in full.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mpp_server import db
from mpp_server.api.reconciliations import DiscrepancyOut, ReconciliationOut, run_out
from mpp_server.config import Settings
from mpp_server.logs import mask_customer
from mpp_server.money import parse_amount
from mpp_server.reconcile import store
from mpp_server.reconcile.matching import FeeRule, Kind
from mpp_server.reconcile.registry import Period, Registry, RegistryError, read_registry

EXIT_MATCHED, EXIT_DISCREPANCIES, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3
FETCH_TIMEOUT_S = 120
MAX_FILE_BYTES = 512 * 1024 * 1024


class _Unavailable(Exception):
    pass


class FeeSettings(BaseSettings):
    """The fee agreed with Kaspi: KASPI_FEE_RATE=0.0195 (1.95 %) checks every payment
    row's fee to within KASPI_FEE_TOLERANCE tenge; unset, only fee ≤ amount and no fee
    on a refund are checked."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)
    kaspi_fee_rate: Decimal | None = Field(default=None, ge=0, lt=1)
    kaspi_fee_tolerance: Decimal = Field(default=Decimal("0.01"), ge=0, le=1000)

    def rule(self) -> FeeRule:
        return FeeRule(self.kaspi_fee_rate, parse_amount(self.kaspi_fee_tolerance))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server reconcile",
        description="Match Kaspi's daily or monthly registry (.xlsx, regulation §5) against "
                    "our payments and refunds; store the run and its discrepancies in "
                    "DATABASE_URL. Exit 0 all matched, 1 discrepancies, 2 bad input, "
                    "3 database or simulator unreachable.")
    parser.add_argument("file", nargs="?", type=Path, help="the registry file (.xlsx)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--date", help="a daily registry's day, YYYY-MM-DD (default for a "
                                     "file: from its name or title)")
    when.add_argument("--month", help="a monthly registry's month, YYYY-MM")
    parser.add_argument("--from-simulator", action="store_true",
                        help="fetch the registry from the Kaspi simulator instead of a file")
    parser.add_argument("--simulator-url",
                        help="default http:// + SIMULATOR_LISTEN (127.0.0.1:8090)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str]) -> int:
    if argv[:1] == ["ack"]:
        return _ack(argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    settings = Settings()
    try:
        fees = FeeSettings().rule()
    except ValueError as exc:  # pydantic's ValidationError, money's AmountError
        return _bad(parser.prog, f"KASPI_FEE_RATE / KASPI_FEE_TOLERANCE: {exc}")
    if bool(args.file) == args.from_simulator:
        return _bad(parser.prog, "give a registry FILE or --from-simulator (not both)")
    try:
        period = (Period.parse("daily", args.date) if args.date
                  else Period.parse("monthly", args.month) if args.month else None)
        if args.from_simulator:
            if period is None:
                return _bad(parser.prog, "--from-simulator needs --date or --month")
            url = args.simulator_url or "http://" + settings.simulator_listen
            content, name = asyncio.run(_fetch(url.rstrip("/"), period))
        else:
            content, name = _read_file(args.file), args.file.name
        registry = read_registry(content, name, period)
    except (ValueError, OSError) as exc:  # RegistryError is a ValueError
        return _bad(parser.prog, str(exc))
    except _Unavailable as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        report, created = asyncio.run(_reconcile(settings.database_url, registry, fees))
    except RegistryError as exc:  # the same file imported as another registry
        return _bad(parser.prog, str(exc))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{parser.prog}: database: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.json:
        print(json.dumps({**report.model_dump(mode="json", exclude_none=True),
                          "alreadyImported": not created}, ensure_ascii=False, indent=2))
    else:
        print(format_report(report, created))
    # What is open now: a re-import after every finding was resolved is clean.
    return EXIT_DISCREPANCIES if report.openDiscrepancies else EXIT_MATCHED


def _ack(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server reconcile ack",
        description="Acknowledge a discrepancy a person has handled: it stops counting as "
                    "open (and in mpp_reconciliation_open_discrepancies); who, when and why "
                    "are stored with it, nothing is deleted.")
    parser.add_argument("item", type=int, help="the discrepancy's id (items[].id)")
    parser.add_argument("--by", required=True, help="who handled it")
    parser.add_argument("--reason", required=True, help="what was done, or why it is fine")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    by, reason = " ".join(args.by.split()), args.reason.strip()
    if not by or len(by) > 100 or not reason or len(reason) > 2000:
        return _bad(parser.prog, "--by (at most 100 characters) and --reason (at most 2000) "
                                 "must not be empty")
    try:
        item = asyncio.run(_acknowledge(Settings().database_url, args.item, by, reason))
    except (store.NotFound, store.AlreadyResolved) as exc:
        return _bad(parser.prog, str(exc))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{parser.prog}: database: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"discrepancy {item['id']} ({item['kind']}, run {item['run_id']}) acknowledged by "
          f"{item['resolved_by']} at {item['resolved_at']:%Y-%m-%d %H:%M:%S%z}: "
          f"{item['resolution']}")
    return EXIT_MATCHED


async def _acknowledge(dsn: str, item_id: int, by: str, reason: str) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        return await store.acknowledge(conn, item_id, by, reason)
    finally:
        await conn.close()


def _bad(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _read_file(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise RegistryError(f"{path.name}: larger than {MAX_FILE_BYTES} bytes")
    return path.read_bytes()


async def _fetch(base_url: str, period: Period) -> tuple[bytes, str]:
    path = "daily?date=" if period.kind == "daily" else "monthly?month="
    url = f"{base_url}/sim/registries/{path}{period.label}"
    try:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            content = await resp.read()
            if resp.status != 200:
                raise RegistryError(f"{url}: HTTP {resp.status} {content[:200]!r}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Unavailable(f"{url}: {exc or type(exc).__name__}") from exc
    return content, f"kaspi-registry-{period.kind}-{period.label}.xlsx"


async def _reconcile(dsn: str, registry: Registry, fees: FeeRule
                     ) -> tuple[ReconciliationOut, bool]:
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        outcome = await store.reconcile(pool, registry, fees)
        async with pool.acquire() as conn:
            run = await store.get_run(conn, outcome.run_id)
            assert run is not None
            items = await store.discrepancies(conn, outcome.run_id)
    finally:
        await pool.close()
    return run_out(run, items), outcome.created


def format_report(run: ReconciliationOut, created: bool) -> str:
    """The report for a person at a terminal (--json has the same content)."""
    k, o = run.kaspi, run.ours
    lines = [f"Kaspi {run.kind} registry {run.period}: {run.fileName} "
             f"(sha256 {run.fileSha256[:12]}…)"]
    if not created:
        lines.append(f"ALREADY IMPORTED as run {run.id} on {_local(run)}: nothing was "
                     "changed; the earlier run follows")
    else:
        lines.append(f"run {run.id}, {_local(run)}")
    fig = run.model_dump(mode="json")  # amounts as "1500.00" strings
    kf, of = fig["kaspi"], fig["ours"]
    lines += ["", f"{'':24}{'count':>8}{'amount':>18}",
              f"{'Kaspi payments':24}{k.paymentsCount:>8}{kf['payments']:>18}",
              f"{'Kaspi refunds':24}{k.refundsCount:>8}{kf['refunds']:>18}",
              f"{'Kaspi fees':24}{'':>8}{kf['fees']:>18}",
              f"{'Kaspi settlement':24}{'':>8}{kf['settlement']:>18}  payments − refunds − fees",
              f"{'our payments':24}{o.paymentsCount:>8}{of['payments']:>18}",
              f"{'our refunds':24}{o.refundsCount:>8}{of['refunds']:>18}",
              f"{'our settlement':24}{'':>8}{of['settlement']:>18}  payments − refunds",
              "settlement " + ("agrees: Kaspi's figure is ours less the fees" if
                               run.settlementAgrees else "DIFFERS beyond the fees"),
              "", f"rows {run.rows}, matched {run.matched}, discrepancies {run.discrepancies} "
                  f"({run.openDiscrepancies} open)"]
    if run.items:
        sheets = len({d.sheet for d in run.items if d.sheet}) > 1
        lines += ["", f"{'row':>6}  {'kind':34} {'Kaspi id':24} {'our id':36} "
                      f"{'registry':>19} {'ours':>19}  message [customer; times]"]
        for d in run.items:
            row = f"{d.sheet}!{d.row}" if sheets and d.sheet and d.row else d.row or "-"
            expected, actual = d.expected, d.actual
            if d.kind == Kind.CUSTOMER_MISMATCH:
                expected, actual = mask_customer(expected), mask_customer(actual)
            lines.append(f"{row:>6}  {d.kind:34} {d.kaspiId or '-':24} "
                         f"{d.ourId or '-':36} {expected or '-':>19} {actual or '-':>19}"
                         f"  {d.message}{_status(d)}{_context(d)}")
    if run.openDiscrepancies:
        result = f"DISCREPANCIES ({run.openDiscrepancies} open)"
    elif run.discrepancies:
        result = f"MATCHED (its {run.discrepancies} discrepancies are resolved)"
    else:
        result = "MATCHED"
    lines += ["", "RESULT: " + result]
    return "\n".join(lines)


def _status(d: DiscrepancyOut) -> str:
    if not d.resolved:
        return ""
    return f" (acknowledged by {d.resolvedBy}: {d.resolution})" if d.resolvedBy else (
        " (resolved)")


def _context(d: DiscrepancyOut) -> str:
    """The customer, masked as in the server's log, and the two times, in local time."""
    fig = d.model_dump(mode="json")
    parts = [f"customer {mask_customer(d.customerId)}"] if d.customerId else []
    parts += [f"{label} {fig[key][:19].replace('T', ' ')}"
              for label, key in (("registry", "registryAt"), ("ours", "ourAt")) if fig[key]]
    return f" [{'; '.join(parts)}]" if parts else ""


def _local(run: ReconciliationOut) -> str:
    return str(run.model_dump(mode="json")["createdAt"])

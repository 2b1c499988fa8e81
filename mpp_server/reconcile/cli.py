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

from mpp_server import audit, cursors, db
from mpp_server.config import Settings
from mpp_server.logs import mask_customer
from mpp_server.money import parse_amount
from mpp_server.reconcile import store
from mpp_server.reconcile.matching import FeeRule, Kind
from mpp_server.reconcile.registry import Registry, RegistryError, RegistryPeriod, read_registry
from mpp_server.reconcile.report import (
    ACKNOWLEDGED_WITH_DIFFERENCES,
    DiscrepancyOut,
    ReconciliationOut,
    item_out,
    run_out,
)

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
                    "3 database or simulator unreachable.",
        epilog="A discrepancy a person has handled: python -m mpp_server reconcile ack "
               "ITEM_ID --by NAME --reason TEXT (see its --help). KASPI_FEE_RATE (e.g. "
               "0.0195) and KASPI_FEE_TOLERANCE (tenge, default 0.01) check each fee "
               "against the agreed rate.")
    parser.add_argument("file", nargs="?", type=Path, help="the registry file (.xlsx)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--date", help="a daily registry's day, YYYY-MM-DD (default for a "
                                     "file: from its name or title)")
    when.add_argument("--month", help="a monthly registry's month, YYYY-MM")
    parser.add_argument("--from-simulator", action="store_true",
                        help="fetch the registry from the Kaspi simulator instead of a file")
    # The simulator is a dev tool: its address is given, not read from the server's
    # settings (the default is where `make run` starts it).
    parser.add_argument("--simulator-url", default="http://127.0.0.1:8090",
                        help="the simulator's base URL (default: make run's, "
                             "http://127.0.0.1:8090)")
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
        period = (RegistryPeriod.parse("daily", args.date) if args.date
                  else RegistryPeriod.parse("monthly", args.month) if args.month else None)
        if args.from_simulator:
            if period is None:
                return _bad(parser.prog, "--from-simulator needs --date or --month")
            url = args.simulator_url
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
        outcome = asyncio.run(_reconcile(settings.database_url, registry, fees))
        del registry, content  # the report is read back from the database, page by page
        open_count = asyncio.run(_report(settings.database_url, outcome, args.json))
    except RegistryError as exc:  # the same file imported as another registry
        return _bad(parser.prog, str(exc))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{parser.prog}: database: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    # What is open now: a re-import after every finding was resolved is clean.
    return EXIT_DISCREPANCIES if open_count else EXIT_MATCHED


def _ack(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server reconcile ack",
        description="Acknowledge a discrepancy a person has handled: it stops counting as "
                    "open (and in mpp_reconciliation_open_discrepancies); who, when and why "
                    "are stored with it, nothing is deleted, and the audit journal gets "
                    "its row (the name given, and the system user who ran this).")
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
        item = asyncio.run(db.with_connection(
            Settings().database_url,
            lambda conn: store.acknowledge(conn, args.item, audit.system_actor(by), reason)))
    except (store.NotFound, store.AlreadyResolved) as exc:
        return _bad(parser.prog, str(exc))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{parser.prog}: database: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"discrepancy {item['id']} ({item['kind']}, run {item['run_id']}) acknowledged by "
          f"{item['resolved_by']} at {item['resolved_at']:%Y-%m-%d %H:%M:%S%z}: "
          f"{item['resolution']}")
    return EXIT_MATCHED


def _bad(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _read_file(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise RegistryError(f"{path.name}: larger than {MAX_FILE_BYTES} bytes")
    return path.read_bytes()


async def _fetch(base_url: str, period: RegistryPeriod) -> tuple[bytes, str]:
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


async def _reconcile(dsn: str, registry: Registry, fees: FeeRule) -> store.Outcome:
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        return await store.reconcile(pool, registry, fees)
    finally:
        await pool.close()


async def _report(dsn: str, outcome: store.Outcome, as_json: bool) -> int:
    """Print the run, its items streamed a page at a time (a bad month has hundreds of
    thousands); the text form for a person (or a log), --json the API's answer. Returns
    how many are open."""
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            record = await store.get_run(conn, outcome.run_id)
            assert record is not None
            run = run_out(record)
            if as_json:
                envelope = json.dumps({**run.model_dump(mode="json", exclude_none=True),
                                       "items": _ITEMS, "alreadyImported": not outcome.created},
                                      ensure_ascii=False, indent=2)
                before_items, after_items = envelope.split(json.dumps(_ITEMS))
                print(before_items + "[")
            else:
                print("\n".join(_head(run, outcome.created)))
            after = cursors.START
            separator = "  "
            while page := await store.discrepancies(conn, run.id, ITEMS_PAGE, after):
                for d in map(item_out, page):
                    if as_json:
                        print(separator + json.dumps(d.model_dump(mode="json",
                                                                  exclude_none=True),
                                                     ensure_ascii=False))
                        separator = ", "
                    else:
                        print(_item_line(d))
                after = page[-1]["id"]
            print("]" + after_items if as_json else "\n" + _result(run))
    finally:
        await pool.close()
    return run.openDiscrepancies


_ITEMS = "\u0000items"  # where the streamed items go in the JSON envelope
ITEMS_PAGE = 5000


def _head(run: ReconciliationOut, created: bool) -> list[str]:
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
    if run.discrepancies:
        lines += ["", f"{'sheet!row':>14}  {'kind':34} {'Kaspi id':24} {'our id':36} "
                      f"{'registry':>19} {'ours':>19}  message [customer; times]"]
    return lines


def _item_line(d: DiscrepancyOut) -> str:
    """One item; customer ids masked as the server's log masks them."""
    row = f"{d.sheet}!{d.row}" if d.sheet and d.row else d.row or "-"
    expected, actual = d.expected, d.actual
    if d.kind == Kind.CUSTOMER_MISMATCH:
        expected, actual = mask_customer(expected), mask_customer(actual)
    return (f"{row:>14}  {d.kind:34} {d.kaspiId or '-':24} {d.ourId or '-':36} "
            f"{expected or '-':>19} {actual or '-':>19}  {d.message}{_status(d)}"
            f"{_context(d)}")


def _result(run: ReconciliationOut) -> str:
    """The run's status as it reads now (sql/functions/reconciliation.sql)."""
    if run.status == "discrepancies":
        return f"RESULT: DISCREPANCIES ({run.openDiscrepancies} open)"
    if run.status == ACKNOWLEDGED_WITH_DIFFERENCES:
        money = ("agrees with ours" if run.settlementAgrees else "differs from ours by "
                 + str(run.model_dump(mode="json")["settlementDifference"]))
        return (f"RESULT: ACKNOWLEDGED WITH DIFFERENCES: Kaspi's settlement {money} "
                f"({run.acknowledgedDiscrepancies} discrepancies acknowledged, none open)")
    if run.discrepancies:
        return (f"RESULT: MATCHED (its {run.discrepancies} discrepancies were resolved by "
                "the registries themselves)")
    return "RESULT: MATCHED"


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

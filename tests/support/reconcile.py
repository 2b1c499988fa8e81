"""Reconciliation tests' shared parts: a stack of the test's own (`env`), the CLI run
in-process, the registry's headers, the open-discrepancies gauge, and the simulator's
registry files read, crafted and written back (sheets, rows, columns)."""

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from mpp_server import db
from mpp_server.devtools.devdb import fresh_database
from mpp_server.kaspi_client.models import KZ_TZ
from mpp_server.metrics import RECONCILIATION_OPEN
from mpp_server.reconcile import cli
from tests.support import helpers
from tests.support.helpers import complete_payment, new_customer, sim
from tests.support.stack import Stack, running_stack

HEADERS = ["ID клиента", "ID операции MPP", "ID операции Kaspi", "ID платежа Kaspi",
           "Дата и время операции", "Тип операции", "Сумма", "Комиссия"]


@pytest.fixture
async def env(admin_dsn: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    """Database, simulator and server of this test only; the CLI's DATABASE_URL is it."""
    async with fresh_database(admin_dsn, "mpp_recon") as dsn:
        pool = await db.create_pool(dsn, min_size=1, max_size=4)
        monkeypatch.setenv("DATABASE_URL", dsn)
        try:
            async with running_stack(dsn, pool, CONFIRM_BUDGET_MS="700") as running:
                yield running
        finally:
            await pool.close()


def open_gauge() -> float:
    """mpp_reconciliation_open_discrepancies summed over its registries."""
    return sum(s.value for m in RECONCILIATION_OPEN.collect() for s in m.samples)


def today() -> str:
    return datetime.now(KZ_TZ).date().isoformat()


async def reconcile(env: Stack, *args: str,
                    capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def reconcile_json(env: Stack, *args: str,
                         capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out, err = await reconcile(env, *args, "--json", capsys=capsys)
    assert code in (0, 1), err
    return code, dict(json.loads(out))


async def registry_file(env: Stack, tmp_path: Path, name: str = "registry") -> Path:
    async with env.http.get(f"{env.sim_url}/sim/registries/daily",
                            params={"date": today()}) as resp:
        assert resp.status == 200
        path = tmp_path / f"{name}-daily-{today()}.xlsx"
        path.write_bytes(await resp.read())
    return path


async def sim_refund(env: Stack, payment_id: str, amount: str) -> None:
    status, body = await sim(env, "POST", "/sim/refunds",
                             {"paymentId": payment_id, "amount": amount})
    assert status == 200 and body["resultCode"] == "SUCCESS", body


async def fault(env: Stack, mode: str, times: int = 1, **extra: Any) -> None:
    await helpers.fault(env, "notifyPayment", mode, times, **extra)


async def runs_and_discrepancies(env: Stack) -> tuple[int, int]:
    async with env.pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM reconciliation_runs) AS runs,
                      (SELECT count(*) FROM reconciliation_discrepancies) AS items""")
    assert row is not None
    return row["runs"], row["items"]


def by_kind(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for item in report.get("items", []):
        found.setdefault(item["kind"], []).append(item)
    return found


AT, TYPE, AMOUNT, FEE = 4, 5, 6, 7  # the simulator's column order (HEADERS)
CUSTOMER, MPP_ID, KASPI_ID = 0, 1, 2


@dataclass
class Sheet:
    title: str
    rows: list[list[Any]]
    header: list[str] | None = None
    hidden: bool = False


async def sim_registry(env: Stack, kind: str = "daily", label: str | None = None) -> bytes:
    """The simulator's registry file, as Kaspi would send it."""
    key = "date" if kind == "daily" else "month"
    label = label or (today() if kind == "daily" else today()[:7])
    async with env.http.get(f"{env.sim_url}/sim/registries/{kind}",
                            params={key: label}) as resp:
        assert resp.status == 200
        return await resp.read()


def rows_of(content: bytes) -> list[list[Any]]:
    """The data rows of the simulator's file (one sheet, header in row 1)."""
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    assert sheet is not None
    header, *rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert header == HEADERS
    return rows


def workbook(*sheets: Sheet) -> bytes:
    book = openpyxl.Workbook()
    assert book.active is not None
    book.remove(book.active)
    for spec in sheets:
        sheet = book.create_sheet(spec.title)
        if spec.header is not None:
            sheet.append(spec.header)
        for row in spec.rows:
            sheet.append(row)
        if spec.hidden:
            sheet.sheet_state = "hidden"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def one_sheet(rows: list[list[Any]], header: list[str] = HEADERS) -> bytes:
    return workbook(Sheet("Реестр", rows, header))


def save(tmp_path: Path, content: bytes, name: str = "crafted.xlsx") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


async def ack(item_id: int, *args: str) -> int:
    """`python -m mpp_server reconcile ack ITEM ...` in-process (it runs its own loop)."""
    return await asyncio.to_thread(cli.main, ["ack", str(item_id), *args])


def row_of(rows: list[list[Any]], kaspi_id: str) -> list[Any]:
    [row] = [r for r in rows if r[KASPI_ID] == kaspi_id]
    return row


async def our_time(env: Stack, payment_id: str) -> datetime:
    async with env.pool.acquire() as conn:
        confirmed: datetime = await conn.fetchval(
            "SELECT confirmed_at FROM payments WHERE payment_id = $1", payment_id)
    return confirmed


def local(at: datetime) -> str:
    return at.astimezone(KZ_TZ).strftime("%Y-%m-%d %H:%M:%S")


async def paid_and_refunded(env: Stack) -> tuple[str, str, str]:
    """Two payments (90.00 and 40.00) and a 15.00 refund of the second."""
    customer = new_customer()
    paid = (await complete_payment(env, customer, "90.00"))["paymentId"]
    refunded = (await complete_payment(env, customer, "40.00"))["paymentId"]
    await sim_refund(env, refunded, "15.00")
    return customer, paid, refunded

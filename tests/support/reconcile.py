"""Reconciliation tests' shared parts: a stack of the test's own (`env`), the CLI run
in-process, the registry's headers, the open-discrepancies gauge."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mpp_server import db
from mpp_server.devtools.devdb import fresh_database
from mpp_server.kaspi_client.models import KZ_TZ
from mpp_server.metrics import RECONCILIATION_OPEN
from mpp_server.reconcile import cli
from tests.support import helpers
from tests.support.helpers import (
    sim,
)
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

"""Issue 27 item 7: the registry's layout is our reading of the regulation (§5's sample
tables are images): the column names in Russian, Kazakh or English with their aliases
(registry.COLUMNS, one table), the Kaspi payment-id column optional (refunds are matched
by their refundId), and a layout we cannot read refused naming what it found and what
we expected."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from mpp_server.kaspi_client.models import KZ_TZ
from mpp_server.reconcile.matching import Books, Kind, OurPayment, OurRefund, match
from mpp_server.reconcile.registry import (
    OpType,
    Registry,
    RegistryPeriod,
    RegistryRow,
)
from tests.support import reconcile as reconcile_support
from tests.support.reconcile import (
    TYPE,
    one_sheet,
    paid_and_refunded,
    reconcile,
    reconcile_json,
    rows_of,
    runs_and_discrepancies,
    save,
    sim_registry,
    today,
)
from tests.support.stack import Stack

env = reconcile_support.env
KASPI_PAYMENT_ID = 3  # the simulator's column of ID платежа Kaspi
ENGLISH_TYPES = {"Оплата": "Payment", "Возврат": "Refund"}


# The simulator's columns in the order it writes them (ID клиента, ID операции MPP, ID
# операции Kaspi, ID платежа Kaspi, date, type, amount, fee), named otherwise.
HEADERS = {
    "en": ["Customer ID", "MPP operation ID", "Kaspi operation ID", "Kaspi payment ID",
           "Operation date and time", "Operation type", "Amount", "Fee"],
    # The regulation's own words (§5.1), in Kazakh, and other variants.
    "alias": ["Сатып алушының сәйкестендіру нөмірі", "Операцияның MPP сәйкестендіру нөмірі",
              "Операцияның ТЖ-дағы сәйкестендіру нөмірі", "ID платежа Kaspi",
              "Date and time", "Түрі", "Сомасы", "Комиссия мөлшері"],
}


@pytest.mark.parametrize("language", ["en", "alias"])
async def test_english_names_and_aliases_are_read(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], language: str) -> None:
    await paid_and_refunded(env)
    rows = rows_of(await sim_registry(env))
    if language == "en":
        for row in rows:
            row[TYPE] = ENGLISH_TYPES[row[TYPE]]
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows, HEADERS[language])),
                                        "--date", today(), capsys=capsys)
    assert code == 0 and report["rows"] == report["matched"] == 3, report
    assert (report["kaspi"]["paymentsCount"], report["kaspi"]["refundsCount"]) == (2, 1)


async def test_registry_without_the_kaspi_payment_id_column_matches_refunds_by_refund_id(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, refunded = await paid_and_refunded(env)
    rows = [r[:KASPI_PAYMENT_ID] + r[KASPI_PAYMENT_ID + 1:]
            for r in rows_of(await sim_registry(env))]
    names = ["ID клиента", "ID операции MPP", "ID операции Kaspi", "Дата и время операции",
             "Тип операции", "Сумма", "Комиссия"]
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows, names)),
                                        "--date", today(), capsys=capsys)
    assert code == 0 and report["rows"] == report["matched"] == 3, report
    assert report["kaspi"]["refunds"] == "15.00"
    async with env.pool.acquire() as conn:
        matched = await conn.fetch("SELECT op_type, kaspi_id FROM reconciliation_matches")
    [refund_id] = [m["kaspi_id"] for m in matched if m["op_type"] == "refund"]
    async with env.pool.acquire() as conn:
        assert await conn.fetchval("SELECT payment_id FROM refunds WHERE refund_id = $1",
                                   refund_id) == refunded


def test_rows_without_a_payment_id_are_still_checked_by_their_mpp_id() -> None:
    at = datetime(2024, 5, 1, 12, 0)  # the registry's local time; ours is aware
    ours = at.replace(tzinfo=KZ_TZ)
    period = RegistryPeriod.day(at.date())
    payment = OurPayment("PAY-1", "7b1c5c0e-0000-4000-8000-000000000001", "770000000001",
                         "COMPLETED", 1500, ours, ours)
    refund = OurRefund("REF-1", "PAY-1", payment.mpp_payment_id, "770000000001", "SUCCESS",
                       500, ours)
    books = Books(payments={"PAY-1": payment}, refunds={"REF-1": refund},
                  period_payments={"PAY-1": payment}, period_refunds={"REF-1": refund})
    paid = RegistryRow("Реестр", 2, "770000000001", payment.mpp_payment_id, "PAY-1", None,
                       at, OpType.PAYMENT, 1500, 0)
    refunded = RegistryRow("Реестр", 3, "770000000001", payment.mpp_payment_id, "REF-1",
                           None, at, OpType.REFUND, 500, 0)

    def findings(*rows: RegistryRow) -> list[tuple[Kind, str | None, str | None]]:
        result = match(Registry("r.xlsx", "0" * 64, period, list(rows)), books, set())
        return [(f.kind, f.expected, f.actual) for f in result.findings]

    assert findings(paid, refunded) == []
    other = "7b1c5c0e-0000-4000-8000-000000000002"
    assert findings(paid, replace(refunded, mpp_id=other)) == [
        (Kind.REFERENCE_MISMATCH, other, payment.mpp_payment_id)]


@pytest.mark.parametrize("names, found", [
    (["Client", "Sum", "When", "Kind"], "found: Client, Sum, When, Kind"),
    (["ID клиента", "ID операции MPP", "ID операции Kaspi", "ID платежа Kaspi",
      "Дата и время операции", "Тип операции"], "missing Сумма / Сома / Amount"),
], ids=["unknown layout", "a column missing"])
async def test_a_layout_we_cannot_read_is_refused_naming_found_and_expected(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], names: list[str],
        found: str) -> None:
    await paid_and_refunded(env)
    rows = [r[:len(names)] for r in rows_of(await sim_registry(env))]
    code, out, err = await reconcile(env, save(tmp_path, one_sheet(rows, names)), "--date",
                                     today(), capsys=capsys)
    assert (code, out) == (2, ""), err
    assert found in err
    assert "expected: ID клиента / Клиенттің ID / Customer ID; " in err
    assert "ID платежа Kaspi / Kaspi төлемінің ID / Kaspi payment ID (optional)" in err
    assert await runs_and_discrepancies(env) == (0, 0)

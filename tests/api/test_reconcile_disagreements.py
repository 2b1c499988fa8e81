"""Reconciliation never says "matched" when Kaspi's money and ours disagree.

Each case reconciles a registry crafted from a real simulator file (real payments,
refunds and cancels behind it): the simulator's .xlsx is read, edited as the case needs
(times, sheets, fees, ids, headers) and written back, then given to the CLI.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import struct
import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mpp_server import db
from mpp_server.kaspi_client.models import KZ_TZ
from mpp_server.logs import mask_customer
from mpp_server.metrics import MONEY_ALARMS, RECONCILIATION_ACKNOWLEDGED, RECONCILIATION_OPEN
from mpp_server.reconcile import store
from mpp_server.reconcile.matching import Books, Kind, OurPayment, OurRefund, match
from mpp_server.reconcile.registry import (
    MAX_UNPACKED_BYTES,
    OpType,
    Registry,
    RegistryPeriod,
    RegistryRow,
)
from tests.support import reconcile as reconcile_support
from tests.support.helpers import (
    call,
    complete_payment,
    deposit,
    new_customer,
    new_qr,
    scan,
    sim,
)
from tests.support.reconcile import (
    AMOUNT,
    AT,
    CUSTOMER,
    FEE,
    HEADERS,
    KASPI_ID,
    TYPE,
    Sheet,
    ack,
    by_kind,
    local,
    one_sheet,
    open_gauge,
    our_time,
    paid_and_refunded,
    reconcile,
    reconcile_json,
    row_of,
    rows_of,
    runs_and_discrepancies,
    save,
    sim_registry,
    today,
    workbook,
)
from tests.support.stack import Stack

env = reconcile_support.env  # the fixture: a database, simulator and server of the test's own
# ---- 1. the same operation on two days -------------------------------------------------

async def test_registry_in_utc_is_dated_before_our_debit(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, paid, _ = await paid_and_refunded(env)
    rows = rows_of(await sim_registry(env))
    for row in rows:  # Kaspi wrote UTC instead of UTC+5
        row[AT] -= timedelta(hours=5)
    day = rows[0][AT].date().isoformat()  # yesterday when run before 05:00
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows)), "--date", day,
                                        capsys=capsys)
    assert code == 1 and report["matched"] == 0
    times = by_kind(report)["time_mismatch"]
    assert len(times) == 3  # two payments and the refund
    item = next(i for i in times if i["kaspiId"] == paid)
    ours = await our_time(env, paid)
    assert item["actual"] == local(ours) and item["ourAt"].startswith(local(ours)[:10])
    assert item["expected"] == (row_of(rows, paid)[AT]).strftime("%Y-%m-%d %H:%M:%S")
    assert "before we completed it" in item["message"]
    assert item["registryAt"].endswith("+05:00") and item["customerId"]


async def paid_with_rows(env: Stack) -> tuple[str, list[list[Any]], datetime]:
    """A 25.00 payment, the simulator's registry rows, and our debit's second as the
    registry writes times (local, naive)."""
    paid = (await complete_payment(env, new_customer(), "25.00"))["paymentId"]
    rows = rows_of(await sim_registry(env))
    ours = (await our_time(env, paid)).astimezone(KZ_TZ).replace(tzinfo=None, microsecond=0)
    return paid, rows, ours


async def test_row_two_seconds_before_our_debit_is_not_matched(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paid, rows, ours = await paid_with_rows(env)
    row_of(rows, paid)[AT] = ours - timedelta(seconds=2)
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows)), "--date",
                                        today(), capsys=capsys)
    assert code == 1 and report["matched"] == 0
    [item] = report["items"]
    assert (item["kind"], item["kaspiId"]) == ("time_mismatch", paid)
    # A second is the registry's rounding: the same row at our debit's second matches.
    row_of(rows, paid)[AT] = ours
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows), "b.xlsx"),
                                        "--date", today(), capsys=capsys)
    assert code == 0 and report["matched"] == 1


async def test_operation_matched_by_one_day_is_not_matched_by_another(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, paid, refunded = await paid_and_refunded(env)
    code, first = await reconcile_json(env, "--from-simulator", "--date", today(),
                                       "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 0 and first["matched"] == 3
    # Kaspi's file of the day before lists the same operations again.
    rows = rows_of(await sim_registry(env))
    for row in rows:
        row[AT] -= timedelta(days=1)
    yesterday = (date.fromisoformat(today()) - timedelta(days=1)).isoformat()
    code, second = await reconcile_json(env, save(tmp_path, one_sheet(rows)), "--date",
                                        yesterday, capsys=capsys)
    assert code == 1 and second["matched"] == 0
    again = by_kind(second)["matched_by_another_registry"]
    assert len(again) == 3
    assert {i["actual"] for i in again} == {f"daily {today()} (run {first['id']})"}
    assert len(by_kind(second)["time_mismatch"]) == 3
    async with env.pool.acquire() as conn:
        claims = await conn.fetch("SELECT kaspi_id, run_id FROM reconciliation_matches "
                                  "WHERE kind = 'daily' ORDER BY kaspi_id")
    assert len(claims) == 3 and {c["run_id"] for c in claims} == {first["id"]}
    assert {paid, refunded} <= {c["kaspi_id"] for c in claims}


async def test_payment_matched_by_one_month_is_not_matched_by_another(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customer = new_customer()
    paid = (await complete_payment(env, customer, "61.00"))["paymentId"]
    month = today()[:7]
    code, first = await reconcile_json(env, "--from-simulator", "--month", month,
                                       "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 0 and first["matched"] == 1
    rows = rows_of(await sim_registry(env, "monthly"))
    start = date.fromisoformat(month + "-01")
    previous = (start - timedelta(days=1)).replace(day=1)
    row_of(rows, paid)[AT] = datetime.combine(previous, row_of(rows, paid)[AT].time())
    code, second = await reconcile_json(
        env, save(tmp_path, one_sheet(rows)), "--month", previous.isoformat()[:7],
        capsys=capsys)
    assert code == 1 and second["matched"] == 0
    [again] = by_kind(second)["matched_by_another_registry"]
    assert (again["kaspiId"], again["actual"]) == (paid, f"monthly {month} (run {first['id']})")
    # Daily and monthly registries are different kinds: each matches it once.
    code, daily = await reconcile_json(env, "--from-simulator", "--date", today(),
                                       "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 0 and daily["matched"] == 1


def test_row_time_bounds_late_and_early() -> None:
    """The bounds (no simulator can be made to answer five minutes late): the row against
    our completion, pure matching."""
    debit = datetime(2026, 11, 29, 23, 40, 0, 300_000, tzinfo=KZ_TZ)
    ours = OurPayment("QR1", "6f1c1e0c-0a43-4a4e-8d6f-1f8f3b0d2a11", "770000000001",
                      "COMPLETED", 10_000, debit, debit)
    books = Books({"QR1": ours}, {}, {"QR1": ours}, {})

    def registry(at: datetime) -> Registry:
        return Registry("r.xlsx", "0" * 64, RegistryPeriod.day(date(2026, 11, 29)), [
            RegistryRow("Реестр", 2, "770000000001", ours.mpp_payment_id, "QR1", "QR1", at,
                OpType.PAYMENT, 10_000, 95)])

    # Kaspi's whole seconds: 23:40:00 for our 23:40:00.3 matches, 23:39:59 does not.
    for late, matched in ((timedelta(minutes=4, seconds=59), True),
                          (timedelta(minutes=5, seconds=2), False),
                          (timedelta(0), True), (timedelta(seconds=-1), False)):
        at = (debit + late).replace(tzinfo=None, microsecond=0)
        result = match(registry(at), books, set())
        assert (result.matched_count == 1) is matched, late
        assert [f.kind for f in result.findings] == ([] if matched else [Kind.TIME_MISMATCH])

    # A refund is Kaspi's request: it may be dated at Kaspi's first attempt, a minute early.
    refund = OurRefund("Ref1", "QR1", ours.mpp_payment_id, "770000000001", "SUCCESS", 10_000,
                       debit)
    books = Books({}, {"Ref1": refund}, {}, {"Ref1": refund})
    for early, matched in ((timedelta(seconds=50), True), (timedelta(seconds=70), False)):
        at = (debit - early).replace(tzinfo=None, microsecond=0)
        rows = [RegistryRow("Реестр", 2, "770000000001", ours.mpp_payment_id, "Ref1", "QR1", at,
                    OpType.REFUND, 10_000, 0)]
        result = match(Registry("r.xlsx", "0" * 64, RegistryPeriod.day(date(2026, 11, 29)), rows),
                       books, set())
        assert (result.matched_count == 1) is matched, early


# ---- 2. the totals decide the exit status ----------------------------------------------

async def test_settlement_difference_is_an_item_until_acknowledged(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, paid, _ = await paid_and_refunded(env)
    rows = [r for r in rows_of(await sim_registry(env)) if r[KASPI_ID] != paid]
    path = save(tmp_path, one_sheet(rows))
    code, report = await reconcile_json(env, path, "--date", today(), capsys=capsys)
    assert code == 1 and not report["settlementAgrees"]
    found = by_kind(report)
    [settlement] = found["settlement_mismatch"]
    assert (settlement["expected"], settlement["actual"]) == ("25.00", "115.00")
    assert "differ from ours by -90.00" in settlement["message"]
    [missing] = found["not_in_registry"]

    # The row's finding handled: the totals still differ, the file still exits 1.
    assert await ack(missing["id"], "--by", "a.operator",
                     "--reason", "Kaspi support ticket 4711: a corrected file follows") == 0
    code, out, _ = await reconcile(env, path, "--date", today(), capsys=capsys)
    assert code == 1 and "ALREADY IMPORTED" in out and "DISCREPANCIES (1 open)" in out
    assert "acknowledged by a.operator: Kaspi support ticket 4711" in out
    await store.refresh_metrics(env.pool)
    assert open_gauge() == 1
    [sample] = [s for m in RECONCILIATION_OPEN.collect() for s in m.samples]
    assert sample.labels == {"registry": "daily", "period": today()}

    # Both handled: nothing is open (exit 0), yet the money still differs: the run reads
    # acknowledged with differences, with the amount, never MATCHED (issue 27: it did).
    assert await ack(settlement["id"], "--by", "a.operator", "--reason", "the same ticket") == 0
    code, out, _ = await reconcile(env, path, "--date", today(), capsys=capsys)
    assert code == 0 and "MATCHED" not in out
    assert ("RESULT: ACKNOWLEDGED WITH DIFFERENCES: Kaspi's settlement differs from ours by "
            "-90.00 (2 discrepancies acknowledged, none open)") in out
    await store.refresh_metrics(env.pool)
    assert open_gauge() == 0
    assert acknowledged_gauge() == {("daily", today()): -9000}
    assert await runs_and_discrepancies(env) == (1, 2)
    status, detail = await call(env, "GET", f"/v1/reconciliations/{report['id']}")
    assert status == 200
    assert (detail["status"], detail["settlementDifference"], detail["openDiscrepancies"],
            detail["acknowledgedDiscrepancies"]) == ("acknowledged_with_differences", "-90.00",
                                                     0, 2)
    status, runs = await call(env, "GET", "/v1/reconciliations?limit=1")
    assert runs["reconciliations"][0]["status"] == "acknowledged_with_differences"
    assert [(i["resolvedBy"], i["resolved"]) for i in detail["items"]] == [
        ("a.operator", True), ("a.operator", True)]
    # Acknowledging twice, or what does not exist, is refused.
    capsys.readouterr()
    assert await ack(missing["id"], "--by", "b", "--reason", "again") == 2
    assert "was resolved at" in capsys.readouterr().err
    assert await ack(999999, "--by", "b", "--reason", "x") == 2
    assert "discrepancy 999999 not found" in capsys.readouterr().err
    assert await ack(missing["id"], "--by", " ", "--reason", "x") == 2


async def test_ack_refuses_an_id_out_of_range_and_control_characters(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad input is exit 2 (not 3, "database unreachable"), and a reason that could
    forge a line of the report (a newline, a terminal escape) is refused, not stored."""
    _, paid, _ = await paid_and_refunded(env)
    rows = [r for r in rows_of(await sim_registry(env)) if r[KASPI_ID] != paid]
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows)), "--date",
                                        today(), capsys=capsys)
    assert code == 1
    [missing] = by_kind(report)["not_in_registry"]
    capsys.readouterr()
    assert await ack(2**63, "--by", "a.operator", "--reason", "x") == 2
    assert await ack(-1, "--by", "a.operator", "--reason", "x") == 2
    for by, reason in (("a.operator", "fine\nRESULT: MATCHED"), ("a.operator", "\x1b[2Jok"),
                       ("a\roperator", "fine"), ("a.operator", "fine\u202e")):
        assert await ack(missing["id"], "--by", by, "--reason", reason) == 2
        assert "control character" in capsys.readouterr().err
    status, detail = await call(env, "GET", f"/v1/reconciliations/{report['id']}")
    assert status == 200
    assert [i["resolved"] for i in detail["items"] if i["id"] == missing["id"]] == [False]


def acknowledged_gauge() -> dict[tuple[str, str], float]:
    """mpp_reconciliation_acknowledged_difference_tiyn by (registry, period)."""
    return {(s.labels["registry"], s.labels["period"]): s.value
            for m in RECONCILIATION_ACKNOWLEDGED.collect() for s in m.samples}


async def test_acknowledged_discrepancy_with_the_money_agreeing_is_not_a_match(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paid, rows, ours = await paid_with_rows(env)
    # Ten minutes off (beyond the tolerances), within the day whatever the hour.
    row_of(rows, paid)[AT] = ours + timedelta(minutes=-10 if ours.hour >= 12 else 10)
    # One file, imported twice: the second import shows the stored run as it reads now
    # (a file saved again is another file: openpyxl writes the time into it).
    path = save(tmp_path, one_sheet(rows))
    code, report = await reconcile_json(env, path, "--date", today(), capsys=capsys)
    assert code == 1 and report["status"] == "discrepancies" and report["settlementAgrees"]
    [item] = report["items"]
    assert item["kind"] == "time_mismatch"
    assert await ack(item["id"], "--by", "a.operator", "--reason", "Kaspi's clock") == 0
    code, report = await reconcile_json(env, path, "--date", today(), capsys=capsys)
    assert code == 0 and report["alreadyImported"]
    assert (report["status"], report["settlementDifference"], report["openDiscrepancies"],
            report["acknowledgedDiscrepancies"]) == ("acknowledged_with_differences", "0.00",
                                                     0, 1)
    await store.refresh_metrics(env.pool)
    # The money agrees: no difference to alert on, and nothing open either.
    assert open_gauge() == 0 and acknowledged_gauge() == {("daily", today()): 0}


# ---- 3. every sheet ---------------------------------------------------------------------

async def test_every_sheet_carrying_the_columns_is_read(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await paid_and_refunded(env)
    rows = rows_of(await sim_registry(env))
    payments = [r for r in rows if r[TYPE] == "Оплата"]
    refunds = [r for r in rows if r[TYPE] == "Возврат"]
    # A hidden empty first sheet, payments split over two sheets, refunds on their own
    # sheet with the columns in another order.
    content = workbook(Sheet("Лист1", [], hidden=True),
                       Sheet("Платежи", payments[:1], HEADERS),
                       Sheet("Платежи (2)", payments[1:], HEADERS),
                       Sheet("Возвраты", [r[::-1] for r in refunds], HEADERS[::-1]))
    code, report = await reconcile_json(env, save(tmp_path, content), "--date", today(),
                                        capsys=capsys)
    assert code == 0 and report["rows"] == report["matched"] == 3
    assert report["settlementAgrees"] and report["items"] == []

    # 50,000.00 more on a second sheet is read, and reported by sheet and row.
    extra = [*payments[0][:2], "QR-SECOND-SHEET", "QR-SECOND-SHEET", *payments[0][4:6],
             50000.0, 475.0]
    content = workbook(Sheet("Реестр", rows, HEADERS), Sheet("Лист2", [extra], HEADERS))
    code, report = await reconcile_json(env, save(tmp_path, content, "b.xlsx"), "--date",
                                        today(), capsys=capsys)
    assert code == 1
    [unknown] = by_kind(report)["not_in_our_books"]
    assert (unknown["kaspiId"], unknown["sheet"], unknown["row"], unknown["expected"]) == (
        "QR-SECOND-SHEET", "Лист2", 2, "50000.00")
    [settlement] = by_kind(report)["settlement_mismatch"]
    assert "differ from ours by 50000.00" in settlement["message"]


@pytest.mark.parametrize("case", ["column_twice", "kazakh_and_russian", "no_header"])
async def test_ambiguous_sheet_refuses_the_file(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    await paid_and_refunded(env)
    rows = rows_of(await sim_registry(env))
    second: Sheet = {
        "column_twice": Sheet("Лист2", [[*r, r[AMOUNT]] for r in rows[:1]],
                              [*HEADERS, "Сумма"]),
        "kazakh_and_russian": Sheet("Лист2", [[*r, r[AMOUNT]] for r in rows[:1]],
                                    [*HEADERS, "Сома"]),
        "no_header": Sheet("Лист2", rows[:1]),
    }[case]
    content = workbook(Sheet("Реестр", rows, HEADERS), second)
    code, out, err = await reconcile(env, save(tmp_path, content), "--date", today(),
                                     capsys=capsys)
    assert (code, out) == (2, ""), err
    assert "sheet 'Лист2' row 1" in err
    assert ("has data but the sheet has no header" if case == "no_header"
            else "the column for amount appears twice (columns 7 and 9)") in err
    assert await runs_and_discrepancies(env) == (0, 0)


# ---- 4. fees ------------------------------------------------------------------------------

async def test_fee_above_the_payment_or_on_a_refund_is_a_discrepancy(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, paid, _ = await paid_and_refunded(env)
    rows = rows_of(await sim_registry(env))
    row_of(rows, paid)[FEE] = 90.01
    [refund] = [r for r in rows if r[TYPE] == "Возврат"]
    refund[FEE] = 0.15
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows)), "--date",
                                        today(), capsys=capsys)
    assert code == 1 and report["matched"] == 1
    fees = {i["kaspiId"]: i for i in by_kind(report)["fee_mismatch"]}
    assert (fees[paid]["expected"], fees[paid]["actual"]) == ("90.01", "90.00")
    assert "larger than the payment" in fees[paid]["message"]
    assert (fees[refund[KASPI_ID]]["expected"], fees[refund[KASPI_ID]]["actual"]) == (
        "0.15", "0.00")
    assert sorted(by_kind(report)) == ["fee_mismatch"]  # the money itself agrees


async def test_fee_must_be_the_agreed_rate_when_configured(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, paid, refunded = await paid_and_refunded(env)
    content = await sim_registry(env)  # the simulator charges 0.95 %
    monkeypatch.setenv("KASPI_FEE_RATE", "0.0195")
    code, report = await reconcile_json(env, save(tmp_path, content), "--date", today(),
                                        capsys=capsys)
    assert code == 1 and report["matched"] == 1  # the refund
    fees = {i["kaspiId"]: i for i in by_kind(report)["fee_mismatch"]}
    assert (fees[paid]["expected"], fees[paid]["actual"]) == ("0.86", "1.76")
    assert (fees[refunded]["expected"], fees[refunded]["actual"]) == ("0.38", "0.78")
    assert "not the agreed 0.0195" in fees[paid]["message"]
    monkeypatch.setenv("KASPI_FEE_RATE", "0.0095")
    rows = rows_of(content)
    row_of(rows, paid)[FEE] = 0.87  # within the default 0.01 tolerance
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows), "b.xlsx"),
                                        "--date", today(), capsys=capsys)
    assert code == 0 and report["matched"] == 3
    monkeypatch.setenv("KASPI_FEE_RATE", "1.5")
    code, _, err = await reconcile(env, save(tmp_path, one_sheet(rows), "c.xlsx"), "--date",
                                   today(), capsys=capsys)
    assert code == 2 and "KASPI_FEE_RATE" in err


# ---- 5. a customer id stored as a number ----------------------------------------------

async def test_numeric_customer_id_gets_its_leading_zero_back(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customer = "0" + new_customer()[1:]
    paid = (await complete_payment(env, customer, "33.00"))["paymentId"]
    rows = rows_of(await sim_registry(env))
    row_of(rows, paid)[CUSTOMER] = int(customer)  # what Excel keeps of "012345678901"
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows)), "--date",
                                        today(), capsys=capsys)
    assert code == 0 and report["matched"] == 1, report["items"]


# ---- 6. bounded size and memory, paged items ------------------------------------------

def declare_size(content: bytes, member: str, size: int) -> bytes:
    """The same zip, its central directory declaring `size` unpacked bytes for `member`."""
    data = bytearray(content)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        names = archive.namelist()
    assert member in names
    at = data.index(b"PK\x01\x02")
    while True:  # walk the central directory to the member's entry
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        name = bytes(data[at + 46:at + 46 + name_len]).decode()
        if name == member:
            struct.pack_into("<I", data, at + 24, size)
            return bytes(data)
        at += 46 + name_len + extra_len + comment_len


@pytest.mark.parametrize("case", ["bomb", "lying_member"])
async def test_oversized_zip_is_refused(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    await paid_and_refunded(env)
    content = await sim_registry(env)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        sheet = next(n for n in archive.namelist() if n.startswith("xl/worksheets/"))
        real = archive.getinfo(sheet).file_size
    # 1.9 GB declared: refused from the directory, nothing unpacked. A member declaring
    # less than it holds cannot unpack beyond what it declares.
    size = 1_900_000_000 if case == "bomb" else real // 2
    code, out, err = await reconcile(
        env, save(tmp_path, declare_size(content, sheet, size), f"kaspi-registry-daily-"
                  f"{today()}.xlsx"), capsys=capsys)
    assert (code, out) == (2, ""), err
    assert (f"more than {MAX_UNPACKED_BYTES} (refused unopened)" if case == "bomb"
            else "not an xlsx workbook") in err
    assert await runs_and_discrepancies(env) == (0, 0)


async def test_items_come_in_pages(env: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    for amount in ("11.00", "12.00", "13.00"):
        status, _ = await sim(env, "POST", "/sim/registries/discrepancies",
                              {"kind": "add_row", "amount": amount,
                               "customerId": "770000000002"})
        assert status == 200
    code, report = await reconcile_json(env, "--from-simulator", "--date", today(),
                                        "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 1 and len(report["items"]) == 4  # 3 rows and the settlement
    url = f"/v1/reconciliations/{report['id']}"
    status, first = await call(env, "GET", url + "?limit=3")
    assert status == 200 and first["nextItemsAfter"] == first["items"][2]["id"]
    for field in ("id", "status", "rows", "discrepancies", "openDiscrepancies", "kaspi"):
        assert first[field] == report[field], field
    status, rest = await call(env, "GET", f"{url}?limit=3&after={first['nextItemsAfter']}")
    assert status == 200 and "nextItemsAfter" not in rest  # the last page
    assert first["items"] + rest["items"] == report["items"]
    for query in ("?limit=0", "?after=x", "?page=2"):
        status, body = await call(env, "GET", url + query)
        assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", query


# ---- 7. the smaller cases -----------------------------------------------------------------

async def test_file_imported_under_another_period_is_refused(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await complete_payment(env, new_customer(), "14.00")
    monthly = save(tmp_path, await sim_registry(env, "monthly"), "monthly.xlsx")
    code, first = await reconcile_json(env, monthly, "--month", today()[:7], capsys=capsys)
    assert code == 0
    before = await runs_and_discrepancies(env)
    code, out, err = await reconcile(env, monthly, "--date", today(), capsys=capsys)
    assert (code, out) == (2, ""), err
    assert (f"this file was imported as the monthly registry of {today()[:7]} "
            f"(run {first['id']}), not as daily {today()}") in err
    # An empty day's file too: imported for its day, refused for the next.
    empty = save(tmp_path, await sim_registry(env, "daily", "2024-02-29"), "empty.xlsx")
    assert (await reconcile(env, empty, "--date", "2024-02-29", capsys=capsys))[0] == 0
    code, _, err = await reconcile(env, empty, "--date", "2024-03-01", capsys=capsys)
    assert code == 2 and "imported as the daily registry of 2024-02-29" in err
    assert await runs_and_discrepancies(env) == (before[0] + 1, before[1])


@pytest.mark.parametrize("status", ["CANCELLED", "EXPIRED", "FAILED"])
def test_registry_confirming_a_payment_we_never_debited_is_a_money_alarm(status: str) -> None:
    at = datetime(2024, 5, 1, 12, 0)
    payment = OurPayment("PAY-1", "7b1c5c0e-0000-4000-8000-000000000001", "770000000001",
                         status, 1500)
    row = RegistryRow("Реестр", 2, "770000000001", payment.mpp_payment_id, "PAY-1", "PAY-1",
                      at, OpType.PAYMENT, 1500, 0)
    result = match(Registry("r.xlsx", "0" * 64, RegistryPeriod.day(at.date()), [row]),
                   Books({"PAY-1": payment}, {}, {}, {}), set())
    assert [(f.kind, f.actual) for f in result.findings if f.row_number] == [
        (Kind.CONFIRMS_CANCELLED, status)]


async def test_registry_confirming_a_cancelled_payment_is_a_money_alarm(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customer = new_customer()
    await complete_payment(env, customer, "20.00")
    await deposit(env, customer, "70.00")
    qr = await new_qr(env, "Dynamic", amount="70.00")
    cancelled = (await scan(env, qr["qrCode"], customer))["payment"]["paymentId"]
    status, body = await call(env, "POST", f"/v1/payments/{cancelled}/cancel",
                              {"customerId": customer})
    assert status == 200 and body["status"] == "CANCELLED", body
    rows = rows_of(await sim_registry(env))
    async with env.pool.acquire() as conn:
        mpp_id = await conn.fetchval(
            "SELECT mpp_payment_id::text FROM payments WHERE payment_id = $1", cancelled)
    now = datetime.now(KZ_TZ).replace(tzinfo=None, microsecond=0)
    rows.append([customer, mpp_id, cancelled, cancelled, now, "Оплата", 70.0, 0.67])
    await store.refresh_metrics(env.pool)
    alarms = MONEY_ALARMS.labels("registry_confirms_cancelled_payment")
    before = alarms._value.get()
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows)), "--date",
                                        today(), capsys=capsys)
    assert code == 1
    [item] = by_kind(report)["registry_confirms_cancelled_payment"]
    assert (item["kaspiId"], item["expected"], item["actual"]) == (
        cancelled, "COMPLETED", "CANCELLED")
    assert "status_mismatch" not in by_kind(report)
    await store.refresh_metrics(env.pool)
    assert alarms._value.get() == before + 1


async def test_an_alarm_is_counted_even_when_a_refresh_is_interrupted(isolated_db: str) -> None:
    """A refresh interrupted (cancelled, or its database gone) once it marked the alarms
    counted left them uncounted for ever, and a concurrent refresh returned without them
    (so a test's refresh saw the old count when the server's housekeeping ran at the
    same moment). Marking and counting now happen together: the next refresh counts it,
    once."""
    pool = await db.create_pool(isolated_db, min_size=1, max_size=2)
    try:
        await store.refresh_metrics(pool)  # the process's starting point in this database
        async with pool.acquire() as conn:
            name = await conn.fetchval("SELECT current_database()")
            run_id = await conn.fetchval(
                """INSERT INTO reconciliation_runs (file_sha256, file_name, kind,
                       period_start, period_end, status, rows_count, matched_count,
                       discrepancy_count, kaspi_payments_count, kaspi_payments_tiyn,
                       kaspi_refunds_count, kaspi_refunds_tiyn, kaspi_fees_tiyn,
                       our_payments_count, our_payments_tiyn, our_refunds_count,
                       our_refunds_tiyn)
                   VALUES (repeat('a', 64), 'alarm.xlsx', 'daily', '2024-02-29',
                           '2024-03-01', 'discrepancies', 1, 0, 1, 1, 100, 0, 0, 0, 0, 0,
                           0, 0) RETURNING id""")
            alarm_id = await conn.fetchval(
                """INSERT INTO reconciliation_discrepancies (run_id, kind, message)
                   VALUES ($1, 'registry_confirms_cancelled_payment', 'alarm')
                   RETURNING id""", run_id)
        alarms = MONEY_ALARMS.labels("registry_confirms_cancelled_payment")
        before = alarms._value.get()
        refreshing = asyncio.create_task(store.refresh_metrics(pool))
        # Interrupted as late as possible: once the alarm is marked counted.
        for _ in range(1_000_000):  # loop turns, each a chance for the refresh to run
            if refreshing.done() or store._alarms_counted_up_to[name] >= alarm_id:
                break
            await asyncio.sleep(0)
        refreshing.cancel()
        await asyncio.gather(refreshing, return_exceptions=True)
        await store.refresh_metrics(pool)
        assert alarms._value.get() == before + 1
        await store.refresh_metrics(pool)
        assert alarms._value.get() == before + 1
    finally:
        await pool.close()


KAZAKH_HEADERS = ["Клиенттің ID", "MPP операциясының ID", "Kaspi операциясының ID",
                  "Kaspi төлемінің ID", "Операцияның күні мен уақыты", "Операция түрі", "Сома",
                  "Комиссия"]


async def test_kazakh_headers_and_types_are_read(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await paid_and_refunded(env)
    rows = rows_of(await sim_registry(env))
    for row in rows:
        row[TYPE] = {"Оплата": "Төлем", "Возврат": "Қайтару"}[row[TYPE]]
    code, report = await reconcile_json(
        env, save(tmp_path, one_sheet(rows, KAZAKH_HEADERS)), "--date", today(),
        capsys=capsys)
    assert code == 0 and report["matched"] == 3
    assert (report["kaspi"]["paymentsCount"], report["kaspi"]["refundsCount"]) == (2, 1)


# A real Excel 97-2003 file (xlwt 1.3.0) of the simulator's registry columns and two
# rows, gzipped: no project dependency writes the old binary format.
REAL_XLS_GZ_B64 = (
    "H4sIAAAAAAACA+1YS2hUVxj+zp0zj0zzmEyTWFMIY9C02gzM5DlEk5vEmlCKeYFYRdBJZgZFE8ukG934zFIQXCnd"
    "CHbRjX0gtcUWdNdFQdGFIAiJgpuuChVcxIzf+efe6UQjGKiCev/L/c//vt/c85x762bt/MWfGhfwHPXBh6VCBQJl"
    "NsW7wlUioL9QMKLbhngXPHqrqCLEjgz4ca3qr6DpQ9PfC7Dwo75BDjzgvQdfY+TwTDb2BmlQMKSVwdBLrvAtLdVY"
    "K6iiwqeEfyj8B4n8XXi/WM4I72XsvNqNm/bIppQzir+ymsVXDVP3quTcE0sS9fjTjOJjZ1Ux1o+B/IH0obfM0aQr"
    "cQns0OHsTDZv9I/wHd8UjpDi09PxTCa2f3/P9HTP7Ow86tjrl/C4EAP+daf39Zhnf7N2BdqfLLcHX2IPsTeft5+z"
    "NHAchX0yW+YYNe6XGa1iupPXgB7U/XoRu1RUxj4QhvoCn7NMj96sUwzpZUhC17jmPm3T2E/TEN0pHcN2jPGqfXnA"
    "l0hjlsvFAe4PTpDN4gkW7tRdbMtD6qHqxGXMJruNtTr1Fj2qX6xdCdXMxl7B5Ydap7cybwtNIahG3UcxxV88QD7K"
    "VHR3J1xKrge6csmpZDYxFU+kO9rjHemObDyV6crFk7lUrn0ykWlLJ5NcCccnkowPQDVp91ckNGfVRDZnHEGoKB/V"
    "rdsEzKAOmw1SFtTIsgW1ShaaSvIMakSuleUmwo5c/P6f29snx+y9Yjkum2hxq91gOhQFnDAZTK4Wjw/uVrtJMj4T"
    "flKqfixyo/A6rgVsW8bqHWHolMScFm8LK7QL3bE/KZM/pTz39/ivTXMP7Y2ULw8vHK27fNe+iGZu/Rnmm+sUWlWr"
    "unDe0G+22ypnWb4vfO0LS3TIijjYC855ogZPERaxVnhRM29HlTTLeVdFzUfNV9I0NV3S/NT8JS1ALVDSgtSCDga1"
    "AgYlGEJOvBIMFSXNYAiXNJ+j+dgjis+PYse+hqs/tz7qL/oNjg/o/4MeJTjya0z14QaDwyCwVkBgLUNgLUNgCYLK"
    "klaOwBIEhq44CCxBUOUgsATB7SCc9xhEnxXFL0bkRvkfheGRRx555JFHHr0npOSIVTxWajlEFY+sQee7zlPeS95n"
    "kneWJnCY1zf8n7YNM2zzOLKq8dMAv3JrqVfMcb8XGtrJp+dxEJOC4+Cqxy8PuKr897xyYuT/m0Krff7SanC+5uc/"
    "A8HRhggAFgAA"
)


async def test_old_binary_xls_is_refused_saying_so(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = gzip.decompress(base64.b64decode(REAL_XLS_GZ_B64))
    code, out, err = await reconcile(env, save(tmp_path, content, "registry.xls"), "--date",
                                     today(), capsys=capsys)
    assert (code, out) == (2, ""), err
    assert "Excel 97-2003 binary workbook (.xls)" in err and "save it as" in err
    assert await runs_and_discrepancies(env) == (0, 0)


async def test_blank_and_dash_fees_and_a_totals_row_are_accepted(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, paid, _ = await paid_and_refunded(env)
    rows = rows_of(await sim_registry(env))
    [refund] = [r for r in rows if r[TYPE] == "Возврат"]
    refund[FEE] = "-"
    row_of(rows, paid)[FEE] = None  # no fee stated: 0, and no rate is configured
    total = sum(r[AMOUNT] for r in rows)
    code, report = await reconcile_json(
        env, save(tmp_path, one_sheet([*rows, [], ["Итого", None, None, None, None, None,
                                                   total, None]])), "--date", today(),
        capsys=capsys)
    assert code == 0 and report["rows"] == report["matched"] == 3
    assert report["kaspi"]["fees"] == "0.38"  # the other payment's only
    # Kazakh "Барлығы" in another cell is a totals row too; one carrying ids is not.
    code, report = await reconcile_json(
        env, save(tmp_path, one_sheet([*rows, [None, None, None, None, None, "Барлығы:",
                                               total, None]]), "b.xlsx"), "--date",
        today(), capsys=capsys)
    assert code == 0 and report["rows"] == 3
    code, out, err = await reconcile(
        env, save(tmp_path, one_sheet([*rows, ["Итого", None, "QR1", "QR1", None, None,
                                               total, None]]), "c.xlsx"), "--date",
        today(), capsys=capsys)
    assert (code, out) == (2, "") and "row 5:" in err


async def test_customer_ids_are_masked_in_the_text_report(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customer, paid, _ = await paid_and_refunded(env)
    rows = rows_of(await sim_registry(env))
    row_of(rows, paid)[CUSTOMER] = "779999999999"
    code, out, err = await reconcile(env, save(tmp_path, one_sheet(rows)), "--date", today(),
                                     capsys=capsys)
    assert code == 1, err
    assert customer not in out and "779999999999" not in out
    assert "customer 7799********" in out and mask_customer(customer) in out
    # The JSON report is the API's answer, for the operator's screens: ids in full.
    code, report = await reconcile_json(env, save(tmp_path, one_sheet(rows)), "--date",
                                        today(), capsys=capsys)
    [item] = by_kind(report)["customer_mismatch"]
    assert (item["expected"], item["actual"], item["customerId"]) == (
        "779999999999", customer, "779999999999")
    assert json.dumps(report)  # serializable as printed

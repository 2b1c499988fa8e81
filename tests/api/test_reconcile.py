"""Reconciliation against Kaspi's registries: `python -m mpp_server reconcile`.

Every test gets a database, a simulator and a server of its own (the shared session
stack would put every other test's payments in the day's registry), makes real traffic,
then reconciles the simulator's registry with the CLI in-process (in a worker thread:
it runs its own event loop), once as a real subprocess.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from mpp_server.kaspi_client.models import KZ_TZ
from mpp_server.metrics import MONEY_ALARMS
from mpp_server.reconcile import store
from tests.support import reconcile as reconcile_support
from tests.support.helpers import (
    call,
    complete_payment,
    confirm,
    confirmed,
    deposit,
    new_customer,
    new_qr,
    payment,
    scan,
    sim,
    wait_status,
)
from tests.support.reconcile import (
    HEADERS,
    by_kind,
    fault,
    open_gauge,
    reconcile,
    reconcile_json,
    registry_file,
    runs_and_discrepancies,
    sim_refund,
    today,
)
from tests.support.stack import Stack

env = reconcile_support.env  # the fixture: a database, simulator and server of its own

async def mixed_day(env: Stack) -> dict[str, str]:
    """A day of every kind of traffic; returns payment ids by what happened to them."""
    rich = new_customer()
    dynamic = (await complete_payment(env, rich, "1000.00"))["paymentId"]
    await deposit(env, rich, "5000.00")

    static_qr = await new_qr(env, "Static")
    static = (await scan(env, static_qr["qrCode"], rich))["payment"]["paymentId"]
    body = await confirmed(env, static, rich, amount="250")

    custom_qr = await new_qr(env, "Custom")
    scanned = await scan(env, custom_qr["qrCode"], rich)
    custom = scanned["payment"]["paymentId"]
    free_text, dropdown = [p for p in scanned["service"]["parameters"] if not p.get("value")]
    status, body = await call(env, "POST", f"/v1/payments/{custom}/checkout", {
        "customerId": rich, "parameters": [
            {"id": free_text["id"], "value": "547RBA02"},
            {"id": dropdown["id"], "value": dropdown["options"][0]["key"]}]})
    assert status == 200, body
    body = await confirmed(env, custom, rich)

    cancel_qr = await new_qr(env, "Dynamic", amount="70.00")
    cancelled = (await scan(env, cancel_qr["qrCode"], rich))["payment"]["paymentId"]
    status, body = await call(env, "POST", f"/v1/payments/{cancelled}/cancel",
                              {"customerId": rich})
    assert status == 200 and body["status"] == "CANCELLED", body

    decline_qr = await new_qr(env, "Dynamic", amount="60.00")
    declined = (await scan(env, decline_qr["qrCode"], rich))["payment"]["paymentId"]
    await fault(env, "error_code", resultCode="RISK_REJECT")
    body = await confirmed(env, declined, rich, wanted="DECLINED")

    poor = new_customer()
    await deposit(env, poor, "1.00")
    poor_qr = await new_qr(env, "Dynamic", amount="90.00")
    unfunded = (await scan(env, poor_qr["qrCode"], poor))["payment"]["paymentId"]
    status, body = await confirm(env, unfunded, poor)
    assert status == 409 and body["error"]["code"] == "INSUFFICIENT_FUNDS", body

    await sim_refund(env, dynamic, "100.00")
    await sim_refund(env, dynamic, "50.50")
    await sim_refund(env, static, "250.00")
    return {"dynamic": dynamic, "static": static, "custom": custom, "cancelled": cancelled,
            "declined": declined, "unfunded": unfunded}


async def test_mixed_day_reconciles_clean(env: Stack, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ids = await mixed_day(env)
    custom_amount = (await payment(env, ids["custom"]))["amount"]
    path = await registry_file(env, tmp_path)

    # A real process, as cron runs it.
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "mpp_server", "reconcile", "--json", str(path)],
        env={**os.environ, "DATABASE_URL": env.database_url}, capture_output=True,
        text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "matched" and not report["alreadyImported"]
    assert report["kind"] == "daily" and report["period"] == today()
    assert report["rows"] == report["matched"] == 6  # 3 payments, 3 refunds
    assert report["discrepancies"] == 0 and report["items"] == []
    paid = Decimal("1000.00") + Decimal("250.00") + Decimal(custom_amount)
    kaspi, ours = report["kaspi"], report["ours"]
    assert (kaspi["paymentsCount"], Decimal(kaspi["payments"])) == (3, paid)
    assert (kaspi["refundsCount"], kaspi["refunds"]) == (3, "400.50")
    # SIM_FEE_PERCENT 0.95 % of each payment, half-up to the tiyn.
    fees = sum((a * Decimal("0.0095")).quantize(Decimal("0.01"))
               for a in (Decimal("1000.00"), Decimal("250.00"), Decimal(custom_amount)))
    assert Decimal(kaspi["fees"]) == fees
    assert Decimal(kaspi["settlement"]) == paid - Decimal("400.50") - fees
    assert (ours["paymentsCount"], Decimal(ours["payments"])) == (3, paid)
    assert Decimal(ours["settlement"]) == paid - Decimal("400.50")
    assert report["settlementAgrees"] is True

    # The same file again: nothing new, says so, same exit status.
    before = await runs_and_discrepancies(env)
    code, out, _ = await reconcile(env, str(path), capsys=capsys)
    assert code == 0 and "ALREADY IMPORTED" in out and "RESULT: MATCHED" in out
    assert await runs_and_discrepancies(env) == before

    # The month so far, straight from the simulator, matches too.
    code, monthly = await reconcile_json(env, "--from-simulator", "--month", today()[:7],
                                         "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 0 and monthly["kind"] == "monthly" and monthly["matched"] == 6

    status, listed = await call(env, "GET", "/v1/reconciliations")
    assert status == 200
    assert [r["id"] for r in listed["reconciliations"]] == [monthly["id"], report["id"]]
    status, detail = await call(env, "GET", f"/v1/reconciliations/{report['id']}")
    assert status == 200 and detail["status"] == "matched" and detail["items"] == []
    status, _ = await call(env, "GET", f"/v1/reconciliations/{report['id']}", token=None)
    assert status == 401
    status, body = await call(env, "GET", "/v1/reconciliations/999999")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"


async def test_injected_discrepancies_are_reported_by_row(
        env: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    customer = new_customer()
    dropped = (await complete_payment(env, customer, "10.00"))["paymentId"]
    changed = (await complete_payment(env, customer, "20.00"))["paymentId"]
    kept = await complete_payment(env, customer, "30.00")
    for body in ({"kind": "drop_row", "kaspiId": dropped},
                 {"kind": "change_amount", "kaspiId": changed, "amount": "25.00"},
                 {"kind": "add_row", "amount": "44.00", "customerId": "770000000001"}):
        status, answer = await sim(env, "POST", "/sim/registries/discrepancies", body)
        assert status == 200, answer
    added = answer["kaspiId"]

    code, report = await reconcile_json(env, "--from-simulator", "--date", today(),
                                        "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 1 and report["status"] == "discrepancies"
    assert report["rows"] == 3 and report["matched"] == 1
    found = by_kind(report)
    assert sorted(found) == ["amount_mismatch", "not_in_our_books", "not_in_registry",
                             "settlement_mismatch"]
    [missing] = found["not_in_registry"]
    assert (missing["kaspiId"], missing["actual"], missing.get("row")) == (dropped, "10.00",
                                                                           None)
    [amount] = found["amount_mismatch"]
    assert (amount["kaspiId"], amount["expected"], amount["actual"]) == (changed, "25.00",
                                                                         "20.00")
    assert amount["row"] >= 2
    [extra] = found["not_in_our_books"]
    assert (extra["kaspiId"], extra["expected"]) == (added, "44.00")
    assert extra["customerId"] == "770000000001"
    [settlement] = found["settlement_mismatch"]  # 99.00 − 60.00
    assert (settlement["expected"], settlement["actual"]) == ("99.00", "60.00")
    assert report["openDiscrepancies"] == 4 and not report["settlementAgrees"]
    assert report["ours"]["payments"] == "60.00" and report["kaspi"]["payments"] == "99.00"
    assert kept["status"] == "COMPLETED"

    # The gauge the server exports: the open discrepancies of the latest run.
    await store.refresh_metrics(env.pool)
    assert open_gauge() == 4

    # A duplicated row makes the file unusable: refused, nothing written.
    await sim(env, "DELETE", "/sim/registries/discrepancies")
    await sim(env, "POST", "/sim/registries/discrepancies",
              {"kind": "duplicate_row", "kaspiId": changed})
    before = await runs_and_discrepancies(env)
    code, out, err = await reconcile(env, "--from-simulator", "--date", today(),
                                     "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 2 and out == ""
    assert f"the same Kaspi operation {changed} (payment) twice" in err
    assert await runs_and_discrepancies(env) == before

    # Kaspi's next file has everything right: the latest run of the day is clean.
    await sim(env, "DELETE", "/sim/registries/discrepancies")
    code, clean = await reconcile_json(env, "--from-simulator", "--date", today(),
                                       "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 0 and clean["matched"] == 3 and clean["discrepancies"] == 0
    await store.refresh_metrics(env.pool)
    assert open_gauge() == 0


async def test_edited_registry_reports_customer_and_type(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customer = new_customer()
    paid = (await complete_payment(env, customer, "80.00"))["paymentId"]
    refunded = (await complete_payment(env, customer, "40.00"))["paymentId"]
    await sim_refund(env, refunded, "15.00")
    path = await registry_file(env, tmp_path)
    sheet = openpyxl.load_workbook(path).active
    assert sheet is not None
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    for row in rows[1:]:
        if row[2] == paid:
            row[0] = "779999999999"
        if row[5] == "Возврат":
            row[5] = "Оплата"
            refund_id = row[2]
    # Columns are found by their names, whatever their order and case.
    rows[0] = [f" {name.upper()} " for name in rows[0]]
    edited = tmp_path / "edited.xlsx"
    edited.write_bytes(xlsx([r[::-1] for r in rows[1:]], rows[0][::-1]))

    code, report = await reconcile_json(env, str(edited), "--date", today(), capsys=capsys)
    assert code == 1
    found = by_kind(report)
    [customer_item] = found["customer_mismatch"]
    assert (customer_item["kaspiId"], customer_item["expected"], customer_item["actual"]) == (
        paid, "779999999999", customer)
    [type_item] = found["type_mismatch"]
    assert (type_item["kaspiId"], type_item["expected"], type_item["actual"]) == (
        refund_id, "payment", "refund")
    # Our refund then is missing from the registry as a refund: not reported twice.
    assert "not_in_registry" not in found


async def test_pending_payment_in_the_registry_ends_completed(
        env: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    customer = new_customer()
    await deposit(env, customer, "100.00")
    qr = await new_qr(env, "Dynamic", amount="35.00")
    payment_id = (await scan(env, qr["qrCode"], customer))["payment"]["paymentId"]
    # Kaspi completes it, and we never hear the answer.
    await fault(env, "reset_after_processing", times=1000)
    status, body = await confirm(env, payment_id, customer)
    assert status == 200 and body["status"] == "PENDING", body

    code, report = await reconcile_json(env, "--from-simulator", "--date", today(),
                                        "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 0 and report["status"] == "matched" and report["matched"] == 1
    [item] = report["items"]
    assert (item["kind"], item["kaspiId"], item["actual"]) == ("pending_completed",
                                                               payment_id, "PENDING")
    assert item["resolved"] is True
    assert (await payment(env, payment_id))["status"] == "COMPLETED"
    assert report["ours"]["payments"] == "35.00" and report["settlementAgrees"]

    # Kaspi's answer finally arrives: nothing moves twice.
    await sim(env, "DELETE", "/sim/faults")
    done = await wait_status(env, payment_id, "COMPLETED")
    for _ in range(100):
        if (await payment(env, payment_id))["kaspiAcknowledged"]:
            break
        await asyncio.sleep(0.1)
    assert (await payment(env, payment_id))["kaspiAcknowledged"] is True
    assert done["amount"] == "35.00"
    async with env.pool.acquire() as conn:
        completed = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'payment.completed' AND payment_id = $1",
            payment_id)
        debits = await conn.fetchval(
            "SELECT count(*) FROM transfers WHERE reference = $1", payment_id)
    assert (completed, debits) == (1, 1)


async def test_registry_confirming_a_declined_payment_is_a_money_alarm(
        env: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    customer = new_customer()
    await deposit(env, customer, "100.00")
    qr = await new_qr(env, "Dynamic", amount="45.00")
    payment_id = (await scan(env, qr["qrCode"], customer))["payment"]["paymentId"]
    # Kaspi completes it, the answer is lost, and the retry is answered with a decline.
    await fault(env, "reset_after_processing")
    await fault(env, "error_code", resultCode="RISK_REJECT")
    status, body = await confirm(env, payment_id, customer)
    assert status == 200, body
    await wait_status(env, payment_id, "DECLINED")
    status, kaspi_side = await sim(env, "GET", f"/sim/payments/{payment_id}")
    assert kaspi_side["status"] == "COMPLETED"

    await store.refresh_metrics(env.pool)  # the server process has seen the books so far
    alarms = MONEY_ALARMS.labels("registry_confirms_declined_payment")
    before = alarms._value.get()
    code, report = await reconcile_json(env, "--from-simulator", "--date", today(),
                                        "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 1
    [item, settlement] = report["items"]  # and Kaspi settles 45.00 we do not hold
    assert (item["kind"], item["kaspiId"], item["expected"], item["actual"]) == (
        "registry_confirms_declined_payment", payment_id, "COMPLETED", "DECLINED")
    assert (settlement["kind"], settlement["expected"]) == ("settlement_mismatch", "45.00")
    assert (await payment(env, payment_id))["status"] == "DECLINED"  # a person decides
    await store.refresh_metrics(env.pool)
    await store.refresh_metrics(env.pool)
    assert alarms._value.get() == before + 1
    assert open_gauge() == 2


def xlsx(rows: list[list[Any]], headers: list[str] = HEADERS) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


NOON = datetime.now(KZ_TZ).replace(hour=12, minute=0, second=0, microsecond=0,
                                   tzinfo=None)


def good_row(kaspi_id: str = "QR1", amount: Any = 100.0) -> list[Any]:
    return ["770000000001", "6f1c1e0c-0a43-4a4e-8d6f-1f8f3b0d2a11", kaspi_id, kaspi_id,
            NOON, "Оплата", amount, 0.95]


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "not_xlsx": (b"ID,amount\n1,2\n", "not an xlsx workbook"),
    "missing_column": (xlsx([good_row()[:7]], HEADERS[:7]), "missing Комиссия"),
    "amount_text": (xlsx([good_row(amount="сто")]), "row 2: Сумма 'сто' is not an amount"),
    "amount_decimals": (xlsx([good_row(amount=100.005)]), "at most two decimals"),
    "outside_day": (xlsx([[*good_row()[:4], datetime(2020, 1, 1, 12), *good_row()[5:]]]),
                    "row 2: date 2020-01-01 12:00:00 is outside the registry's day"),
    "duplicate": (xlsx([good_row(), good_row()]),
                  "rows 2 and 3: the same Kaspi operation QR1 (payment) twice"),
    "bad_type": (xlsx([[*good_row()[:5], "Перевод", *good_row()[6:]]]),
                 "neither Оплата nor Возврат"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_bad_file_is_refused_and_writes_nothing(
        env: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    content, message = BAD_FILES[case]
    path = tmp_path / f"kaspi-registry-daily-{today()}.xlsx"
    path.write_bytes(content)
    code, out, err = await reconcile(env, str(path), capsys=capsys)
    assert (code, out) == (2, ""), err
    assert message in err
    assert await runs_and_discrepancies(env) == (0, 0)


async def test_period_must_be_known(env: Stack, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "registry.xlsx"
    path.write_bytes(xlsx([]))
    code, _, err = await reconcile(env, str(path), capsys=capsys)
    assert code == 2 and "give --date YYYY-MM-DD or --month YYYY-MM" in err
    code, _, err = await reconcile(env, str(path), "--date", "2024-02-30", capsys=capsys)
    assert code == 2
    # An empty registry of a day without traffic is fine.
    code, report = await reconcile_json(env, str(path), "--date", "2024-02-29",
                                        capsys=capsys)
    assert code == 0 and report["rows"] == 0 and report["settlementAgrees"]

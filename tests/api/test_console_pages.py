"""Issue 24: what the console's pages show and what its actions do, against the real
server and simulator: search by every kind of id, a payment's whole life, a customer,
the overview; the operator actions (identification level, notify and top-up "now"),
each one transaction with its journal row; the operators and reconcile commands."""

from __future__ import annotations

import asyncio
import html
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from mpp_server.console.formatting import signed_tenge
from mpp_server.console.operators import Role
from mpp_server.reconcile import cli as reconcile_cli
from mpp_server.reconcile import store
from tests.support import helpers
from tests.support.console import (
    Browser,
    Page,
    add_operator,
    browsers,
    console_stack,
    journal_since,
    last_journal_id,
    open_discrepancy,
)
from tests.support.stack import Stack

__all__ = ["browsers", "console_stack"]  # the fixtures this module uses
WAIT_S = 20.0


async def operator_in(browser: Browser, stack: Stack, role: Role = Role.OPERATOR) -> str:
    login, password = await add_operator(stack.pool, role)
    assert (await browser.sign_in(login, password)).status == 200
    return login


async def deposit(stack: Stack, customer: str, amount: str) -> str:
    """A deposit whose id does not contain the customer's (the masking test looks)."""
    deposit_id = "dep-" + uuid.uuid4().hex[:12]
    status, body = await helpers.call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                                      {"depositId": deposit_id, "amount": amount},
                                      token=stack.deposit_token)
    assert status == 201, body
    return deposit_id


async def refunded_payment(stack: Stack) -> tuple[str, dict[str, Any]]:
    """A customer's COMPLETED payment of 300.00 with a 100.00 refund from Kaspi."""
    customer = helpers.new_customer()
    await deposit(stack, customer, "1000.00")
    qr = await helpers.new_qr(stack, "Dynamic", amount="300.00")
    scanned = await helpers.scan(stack, qr["qrCode"], customer)
    status, paid = await helpers.confirm(stack, scanned["payment"]["paymentId"], customer)
    assert status == 200 and paid["status"] == "COMPLETED", paid
    status, refund = await helpers.sim(stack, "POST", "/sim/refunds",
                                       {"paymentId": paid["paymentId"], "amount": "100.00"})
    assert status == 200 and refund["resultCode"] == "SUCCESS", refund
    return customer, {**await helpers.payment(stack, paid["paymentId"]),
                      "refundId": refund["refundId"]}


@asynccontextmanager
async def kaspi_not_answering(stack: Stack, amount: str) -> AsyncIterator[str]:
    """A payment confirmed while Kaspi answers every notifyPayment with HTTP 500: it
    stays PENDING, its outbox row failing, until the block ends (Kaspi answers again)."""
    customer = helpers.new_customer()
    await deposit(stack, customer, "100.00")
    qr = await helpers.new_qr(stack, "Dynamic", amount=amount)
    payment_id = (await helpers.scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    await helpers.fault(stack, "notifyPayment", "http500", 10_000)
    try:
        status, body = await helpers.confirm(stack, payment_id, customer)
        assert status == 200 and body["status"] == "PENDING", body
        yield payment_id
    finally:
        await helpers.sim(stack, "DELETE", "/sim/faults")


async def until(check: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        await asyncio.sleep(0.05)


# ---- search ----------------------------------------------------------------------------

async def test_search_opens_the_page_of_every_kind_of_id(
        console_stack: Stack, browsers: list[Browser]) -> None:
    customer, paid = await refunded_payment(console_stack)
    deposit_id = await deposit(console_stack, customer, "5.00")
    status, topup = await helpers.call(console_stack, "POST", "/v1/topups", {
        "topupId": "tu-" + uuid.uuid4().hex[:12], "customerId": customer,
        "provider": "kapital", "amount": "50.00"})
    assert status == 201, topup
    await operator_in(browsers[0], console_stack, Role.VIEWER)
    payment_page = f"/payments/{paid['paymentId']}"
    for query, lands in ((paid["paymentId"], payment_page),
                         (paid["mppPaymentId"], payment_page),
                         (paid["mppPaymentId"].upper(), payment_page),
                         (f"  {paid['refundId']} ", payment_page),
                         (topup["topupId"], f"/topups/{topup['topupId']}"),
                         (topup["providerOrderId"], f"/topups/{topup['topupId']}"),
                         (deposit_id, f"/customers/{customer}"),
                         (customer, f"/customers/{customer}")):
        page = await browsers[0].get(f"/search?q={query}")
        assert page.status == 200 and page.url == browsers[0].base_url + lands, query
    nothing = await browsers[0].get("/search?q=no-such-id-anywhere")
    assert nothing.status == 200 and "Nothing has the id" in nothing.text


async def test_a_customer_id_is_shown_masked(console_stack: Stack,
                                             browsers: list[Browser]) -> None:
    customer, paid = await refunded_payment(console_stack)
    await operator_in(browsers[0], console_stack, Role.VIEWER)
    for path in (f"/payments/{paid['paymentId']}", f"/customers/{customer}"):
        page = await browsers[0].get(path)
        assert customer[:4] + "********" in page.text
        # In full only where it must be: the links and the forms' addresses.
        shown = page.text.replace(f"/customers/{customer}", "")
        assert customer not in shown, path


# ---- a payment's whole life ------------------------------------------------------------

async def test_payment_page_shows_its_whole_life_in_time_order(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path) -> None:
    _, paid = await refunded_payment(console_stack)
    await operator_in(browsers[0], console_stack, Role.VIEWER)
    page = await browsers[0].get(f"/payments/{paid['paymentId']}")
    assert page.status == 200
    text = page.text
    # The ledger lines: the debit and the refund's credit, each with the balance after.
    assert "Ledger: payment" in text and "-300.00" in text and "700.00" in text
    assert "Ledger: refund" in text and "+100.00" in text and "800.00" in text
    # Kaspi's answer to notifyPayment, the refund with its receipt, the events.
    assert "Kaspi answered notifyPayment" in text and "SUCCESS" in text
    async with console_stack.pool.acquire() as conn:
        receipt = await conn.fetchval("SELECT link_receipt FROM refunds WHERE refund_id = $1",
                                      paid["refundId"])
    assert paid["refundId"] in text and receipt and html.escape(receipt) in text
    assert "Event payment.completed" in text and "Event refund.credited" in text
    order = [text.index(what) for what in ("Scanned: SCANNED", "Ledger: payment",
                                           "Kaspi answered notifyPayment",
                                           f"Refund {paid['refundId']}")]
    assert order == sorted(order)


# ---- actions ---------------------------------------------------------------------------

async def test_set_identification_level_uses_the_deposit_token_apis_rule(
        console_stack: Stack, browsers: list[Browser]) -> None:
    customer = helpers.new_customer()  # no account yet: the rule creates it, as the API's
    login = await operator_in(browsers[0], console_stack)
    token = (await browsers[0].get("/")).csrf_token
    before = await last_journal_id(console_stack.pool)
    # The contract's form: `level` and `csrf_token`, nothing else.
    page = await browsers[0].post(f"/customers/{customer}/identification",
                                  {"level": "SIMPLIFIED", "csrf_token": token})
    assert page.url.endswith(f"/customers/{customer}?done=level_set")
    assert "The identification level is set" in page.text
    status, account = await helpers.call(console_stack, "GET", f"/v1/accounts/{customer}")
    assert status == 200 and account["identificationLevel"] == "SIMPLIFIED"
    assert account["balance"] == "0.00"
    page = await browsers[0].post(f"/customers/{customer}/identification",
                                  {"level": "FULL", "reason": "documents seen at the branch",
                                   "csrf_token": token})
    rows = await journal_since(console_stack.pool, before)
    assert [(r["actor"], r["action"], r["subject"]) for r in rows] == [
        (login, "identification_level_set", f"customer:{customer}")] * 2
    assert rows[0]["details"] == {"from": None, "to": "SIMPLIFIED"}
    assert rows[1]["details"] == {"from": "SIMPLIFIED", "to": "FULL",
                                  "reason": "documents seen at the branch"}
    bad = await browsers[0].post(f"/customers/{customer}/identification",
                                 {"level": "PLATINUM", "csrf_token": token})
    assert bad.status == 400
    assert len(await journal_since(console_stack.pool, before)) == 2


async def test_retry_notify_now_makes_the_outbox_row_due_and_the_worker_sends_it(
        console_stack: Stack, browsers: list[Browser]) -> None:
    async with kaspi_not_answering(console_stack, "40.00") as payment_id:
        # The worker keeps failing; then its next attempt is far off (a long backoff).
        await until(lambda: outbox_attempts(console_stack, payment_id, at_least=2),
                    "two failed notify attempts")
    async with console_stack.pool.acquire() as conn:
        await conn.execute("UPDATE notify_outbox SET next_attempt_at = now() + interval '1 hour'"
                           " WHERE payment_id = $1", payment_id)
    login = await operator_in(browsers[0], console_stack)
    page = await browsers[0].get(f"/payments/{payment_id}")
    assert "Waiting for Kaspi" in page.text and "HTTP_500" in page.text
    before = await last_journal_id(console_stack.pool)
    done = await browsers[0].post(f"/payments/{payment_id}/notify-retry",
                                  {"csrf_token": page.csrf_token})
    assert done.url.endswith("?done=notify_DUE_NOW"), done.url
    await helpers.wait_status(console_stack, payment_id, "COMPLETED", WAIT_S)
    [row] = await journal_since(console_stack.pool, before)
    assert (row["actor"], row["action"], row["subject"], row["details"]) == (
        login, "notify_retry", f"payment:{payment_id}", {"outcome": "DUE_NOW"})
    # Answered: nothing is waiting any more (journaled too: the operator asked).
    again = await browsers[0].post(f"/payments/{payment_id}/notify-retry",
                                   {"csrf_token": page.csrf_token})
    assert again.url.endswith("?done=notify_NOT_WAITING")
    assert "Nothing to retry" in again.text


async def test_payment_page_lists_each_notify_attempt_from_the_exchange_journal(
        console_stack: Stack, browsers: list[Browser]) -> None:
    async with kaspi_not_answering(console_stack, "35.00") as payment_id:
        await until(lambda: outbox_attempts(console_stack, payment_id, at_least=2),
                    "two failed notify attempts")
    await helpers.wait_status(console_stack, payment_id, "COMPLETED", WAIT_S)

    async def journaled_success() -> bool:
        rows = await helpers.journal_rows(console_stack, "payment_id", payment_id, 1)
        return any(r["operation"] == "notifyPayment" and r["http_status"] == 200
                   for r in rows)

    await until(journaled_success, "the answered notifyPayment in the journal")
    attempts = [r for r in await helpers.journal_rows(console_stack, "payment_id",
                                                      payment_id, 1)
                if r["operation"] == "notifyPayment"]
    await operator_in(browsers[0], console_stack, Role.VIEWER)
    page = await browsers[0].get(f"/payments/{payment_id}")
    notify = page.text[page.text.index('id="notify"'):page.text.index("Life, in time order")]
    # Every attempt, each with its own time: the failed ones and Kaspi's final answer.
    assert notify.count("<tr><td>") == len(attempts) >= 3
    assert notify.count("HTTP_500") == len(attempts) - 1
    assert "SUCCESS</code> <span class=\"muted\">final</span>" in notify
    assert "Only the final answer" not in notify
    assert page.text.count("notifyPayment had no answer") == len(attempts) - 1


async def outbox_attempts(stack: Stack, payment_id: str, at_least: int) -> bool:
    async with stack.pool.acquire() as conn:
        attempts = await conn.fetchval(
            "SELECT attempts FROM notify_outbox WHERE payment_id = $1", payment_id)
    return attempts is not None and attempts >= at_least


async def test_check_topup_now_makes_the_status_check_due_and_credits_it(
        console_stack: Stack, browsers: list[Browser]) -> None:
    customer = helpers.new_customer()
    status, topup = await helpers.call(console_stack, "POST", "/v1/topups", {
        "topupId": "tu-" + uuid.uuid4().hex[:12], "customerId": customer,
        "provider": "halyk-epay", "amount": "75.00"})
    assert status == 201, topup
    async with console_stack.pool.acquire() as conn:
        await conn.execute("UPDATE topups SET next_check_at = now() + interval '1 hour' "
                           "WHERE topup_id = $1", topup["topupId"])
    # Paid at the acquirer, and its callback lost: only a status check can credit it.
    status, paid = await helpers.sim(console_stack, "POST", "/sim/acquiring/pay", {
        "paymentUrl": topup["paymentUrl"], "outcome": "success", "callback": "skip"})
    assert status == 200, paid
    login = await operator_in(browsers[0], console_stack)
    page = await browsers[0].get(f"/topups/{topup['topupId']}")
    assert "CREATED" in page.text and "Check the status with the acquirer now" in page.text
    before = await last_journal_id(console_stack.pool)
    done = await browsers[0].post(f"/topups/{topup['topupId']}/status-check",
                                  {"csrf_token": page.csrf_token})
    assert done.url.endswith("?done=topup_DUE_NOW")

    async def credited() -> bool:
        _, now = await helpers.call(console_stack, "GET", f"/v1/topups/{topup['topupId']}")
        return bool(now["status"] == "CREDITED")

    await until(credited, "the top-up credited")
    assert await helpers.balance(console_stack, customer) == "75.00"
    [row] = await journal_since(console_stack.pool, before)
    assert (row["actor"], row["action"], row["details"]) == (
        login, "topup_status_check", {"outcome": "DUE_NOW"})


# ---- the overview and the customer -----------------------------------------------------

async def test_overview_shows_what_needs_a_person(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path) -> None:
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    async with kaspi_not_answering(console_stack, "30.00") as payment_id:
        await operator_in(browsers[0], console_stack, Role.VIEWER)
        sections: dict[str, str] = {}

        async def listed_as_pending() -> bool:
            # Past its budget (CONFIRM_BUDGET_MS after the debit) it is listed.
            sections.update(sections_of(await browsers[0].get("/")))
            return payment_id in sections["pending"]

        await until(listed_as_pending, "the payment listed as PENDING past its budget")
        assert "HTTP_500" in sections["pending"]
        assert payment_id in sections["outbox"]
        assert f"#item-{item_id}" in sections["discrepancies"]
        assert "reachable" in sections["reachability"]
    await helpers.wait_status(console_stack, payment_id, "COMPLETED", WAIT_S)


def sections_of(page: Page) -> dict[str, str]:
    """The overview's sections' HTML by key (the page's `id`s)."""
    found = {}
    for key in ("reachability", "pending", "outbox", "topups", "card_refunds",
                "discrepancies"):
        start = page.text.index(f'id="{key}"')
        found[key] = page.text[start:page.text.index("</section>", start)]
    return found


async def test_customer_page_shows_balance_limits_and_the_statement_paged(
        console_stack: Stack, browsers: list[Browser]) -> None:
    customer, paid = await refunded_payment(console_stack)
    for _ in range(3):
        await deposit(console_stack, customer, "1.00")
    await operator_in(browsers[0], console_stack, Role.VIEWER)
    page = await browsers[0].get(f"/customers/{customer}")
    assert "803.00 KZT" in page.text  # 1000 - 300 + 100 + 3 × 1
    # The day's payments against the limit: the refund does not give room back.
    assert "payments today (Kazakhstan day)" in page.text and "300.00" in page.text
    assert paid["paymentId"] in page.text
    first_line = page.text.index("<td>deposit</td>")
    assert first_line < page.text.index("<td>payment</td>")  # newest first


# ---- the command line ------------------------------------------------------------------

def run_cli(stack: Stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpp_server", *args], input=stdin,
                          env={**os.environ, "DATABASE_URL": stack.database_url},
                          capture_output=True, text=True, timeout=60)


async def test_operators_command_adds_lists_and_disables(
        console_stack: Stack, browsers: list[Browser]) -> None:
    login = "cli-" + uuid.uuid4().hex[:8]
    password = "a password from stdin " + uuid.uuid4().hex
    before = await last_journal_id(console_stack.pool)
    # Never from the arguments: there is no option for it.
    refused = await asyncio.to_thread(run_cli, console_stack, "operators", "add", login,
                                      "--role", "operator", "--password", password)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
    added = await asyncio.to_thread(run_cli, console_stack, "operators", "add", login,
                                    "--role", "operator", stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    assert password not in added.stdout + added.stderr
    short = await asyncio.to_thread(run_cli, console_stack, "operators", "add", login + "x",
                                    "--role", "viewer", stdin="short\n")
    assert short.returncode == 2 and "12 to 1024 characters" in short.stderr
    again = await asyncio.to_thread(run_cli, console_stack, "operators", "add", login,
                                    "--role", "viewer", stdin=password + "\n")
    assert again.returncode == 2 and "exists already" in again.stderr
    listed = await asyncio.to_thread(run_cli, console_stack, "operators", "list")
    assert any(line.split()[:3] == [login, "operator", "enabled"]
               for line in listed.stdout.splitlines())
    assert (await browsers[0].sign_in(login, password)).status == 200

    # A new password: the session ends, the old password no longer signs in.
    renewed = await asyncio.to_thread(run_cli, console_stack, "operators", "password", login,
                                      stdin=password + " renewed\n")
    assert renewed.returncode == 0, renewed.stderr
    assert (await browsers[0].get("/", follow=False)).status == 303
    assert (await browsers[0].sign_in(login, password)).status == 401
    assert (await browsers[0].sign_in(login, password + " renewed")).status == 200

    disabled = await asyncio.to_thread(run_cli, console_stack, "operators", "disable", login)
    assert disabled.returncode == 0, disabled.stderr
    assert (await browsers[0].get("/", follow=False)).status == 303
    rows = await journal_since(console_stack.pool, before)
    cli_rows = [(r["action"], r["via"], r["subject"]) for r in rows if r["via"] == "cli"]
    assert cli_rows == [("operator_added", "cli", f"operator:{login}"),
                        ("operator_password_set", "cli", f"operator:{login}"),
                        ("operator_disabled", "cli", f"operator:{login}")]
    assert all(r["details"]["system_user"] for r in rows if r["via"] == "cli")


async def test_a_run_acknowledged_while_its_money_differs_reads_so(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path) -> None:
    """Issue 27: acknowledging every item of a run whose settlement differs leaves it
    acknowledged_with_differences, with the amount, on both pages; never matched."""
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    async with console_stack.pool.acquire() as conn:
        run_id: int = await conn.fetchval(
            "SELECT run_id FROM reconciliation_discrepancies WHERE id = $1", item_id)
        open_items = [r["id"] for r in await conn.fetch(
            "SELECT id FROM reconciliation_discrepancies WHERE run_id = $1 AND NOT resolved",
            run_id)]
    assert len(open_items) >= 2  # the row's not_in_registry and the settlement_mismatch
    await operator_in(browsers[0], console_stack)
    token = (await browsers[0].get("/reconciliation")).csrf_token
    for open_item in open_items:
        page = await browsers[0].post(f"/reconciliation/discrepancies/{open_item}/acknowledge",
                                      {"reason": "Kaspi ticket 27", "csrf_token": token})
        assert page.status == 200, page.text
    async with console_stack.pool.acquire() as conn:
        run = await store.get_run(conn, run_id)
    assert run is not None and run["open_count"] == 0
    assert run["status_now"] == "acknowledged_with_differences"
    assert run["settlement_difference_tiyn"] != 0
    page = await browsers[0].get(f"/reconciliation/runs/{run_id}")
    assert "badge-acknowledged_with_differences" in page.text and "badge-matched" not in page.text
    assert signed_tenge(run["settlement_difference_tiyn"]) in html.unescape(page.text)
    listing = await browsers[0].get("/reconciliation")
    assert f'href="/reconciliation/runs/{run_id}"' in listing.text
    assert "badge-acknowledged_with_differences" in listing.text


async def test_reconcile_ack_writes_the_same_journal(
        console_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    monkeypatch.setenv("DATABASE_URL", console_stack.database_url)
    before = await last_journal_id(console_stack.pool)
    code = await asyncio.to_thread(reconcile_cli.main, ["ack", str(item_id), "--by",
                                                        "a.operator", "--reason", "ticket 9"])
    assert code == 0
    [row] = await journal_since(console_stack.pool, before)
    assert (row["actor"], row["via"], row["action"], row["subject"]) == (
        "a.operator", "cli", "discrepancy_acknowledged", f"discrepancy:{item_id}")
    assert row["details"]["reason"] == "ticket 9" and row["details"]["system_user"]

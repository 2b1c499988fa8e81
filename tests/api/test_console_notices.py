"""Issue 25 in the operators' console: open disputes listed by due time and resolved by
an operator (the same function as the command, one transaction with its journal row),
webhooks given up listed and replayed, a disputeId found by the search."""

from __future__ import annotations

import uuid

from mpp_server.console.operators import Role
from tests.support import helpers
from tests.support.console import (
    Browser,
    add_operator,
    browsers,
    console_stack,
    journal_since,
    last_journal_id,
)
from tests.support.stack import Stack

__all__ = ["browsers", "console_stack"]  # the fixtures this module uses


async def signed_in(browser: Browser, stack: Stack, role: Role) -> str:
    login, password = await add_operator(stack.pool, role)
    assert (await browser.sign_in(login, password)).status == 200
    return login


async def open_dispute(stack: Stack, reason: str) -> tuple[str, str]:
    """A dispute of a completed payment: (disputeId, paymentId)."""
    customer = helpers.new_customer()
    payment_id = (await helpers.complete_payment(stack, customer, "70.00"))["paymentId"]
    dispute_id = "dp-" + uuid.uuid4().hex[:12]
    status, body = await helpers.call(stack, "POST", "/v1/disputes", {
        "disputeId": dispute_id, "paymentId": payment_id, "customerId": customer,
        "reason": reason})
    assert status == 201, body
    return dispute_id, payment_id


async def test_an_operator_resolves_a_dispute_listed_by_due_time_and_it_is_journaled(
        console_stack: Stack, browsers: list[Browser]) -> None:
    dispute_id, payment_id = await open_dispute(console_stack, "<b>charged twice</b>")
    viewer, operator = browsers[0], browsers[1]
    await signed_in(viewer, console_stack, Role.VIEWER)
    login = await signed_in(operator, console_stack, Role.OPERATOR)
    overview = await operator.get("/")
    section = overview.text[overview.text.index('id="disputes"'):]
    section = section[:section.index("</section>")]
    assert f'id="dispute-{dispute_id}"' in section
    assert "&lt;b&gt;charged twice&lt;/b&gt;" in section  # shown escaped
    assert "/resolve" not in (await viewer.get("/")).text  # a viewer has no form

    form = {"csrf_token": overview.csrf_token, "resolution": "REJECTED",
            "note": "one coffee on the receipt"}
    refused = await viewer.post(f"/disputes/{dispute_id}/resolve",
                                {**form, "csrf_token": (await viewer.get("/")).csrf_token})
    assert refused.status == 403
    before = await last_journal_id(console_stack.pool)
    done = await operator.post(f"/disputes/{dispute_id}/resolve", form)
    assert done.status == 200 and "The dispute is resolved" in done.text
    status, shown = await helpers.call(console_stack, "GET", f"/v1/disputes/{dispute_id}")
    assert status == 200 and (shown["status"], shown["resolution"], shown["note"]) == (
        "RESOLVED", "REJECTED", "one coffee on the receipt")
    [row] = await journal_since(console_stack.pool, before)
    assert (row["actor"], row["via"], row["action"], row["subject"]) == (
        login, "console", "dispute_resolved", f"dispute:{dispute_id}")
    assert row["details"]["payment_id"] == payment_id
    again = await operator.post(f"/disputes/{dispute_id}/resolve",
                                {**form, "resolution": "REFUNDED"})
    assert again.status == 409 and "already RESOLVED as REJECTED" in again.text
    found = await operator.get(f"/search?q={dispute_id}")
    assert found.url.endswith(f"/payments/{payment_id}")


async def test_an_operator_replays_a_webhook_given_up(
        console_stack: Stack, browsers: list[Browser]) -> None:
    done = await helpers.complete_payment(console_stack, helpers.new_customer(), "15.00")
    async with console_stack.pool.acquire() as conn:  # no sender here: as if given up
        event_id = await conn.fetchval(
            "SELECT id FROM events WHERE payment_id = $1 AND type = 'payment.completed'",
            done["paymentId"])
        await conn.execute("UPDATE webhook_deliveries SET pending_since = now() - "
                           "interval '4 days' WHERE event_id = $1", event_id)
        await conn.fetch("SELECT webhooks_give_up_expired(3 * 86400)")
    login = await signed_in(browsers[0], console_stack, Role.OPERATOR)
    overview = await browsers[0].get("/")
    assert f'action="/webhooks/{event_id}/replay"' in overview.text
    before = await last_journal_id(console_stack.pool)
    replayed = await browsers[0].post(f"/webhooks/{event_id}/replay",
                                      {"csrf_token": overview.csrf_token})
    assert replayed.status == 200 and "The webhook is due again" in replayed.text
    async with console_stack.pool.acquire() as conn:
        delivery = await conn.fetchrow(
            "SELECT status, replays FROM webhook_deliveries WHERE event_id = $1", event_id)
    assert delivery is not None and (delivery["status"], delivery["replays"]) == ("PENDING", 1)
    [row] = await journal_since(console_stack.pool, before)
    assert (row["actor"], row["action"], row["subject"]) == (
        login, "webhook_replayed", f"webhook:{event_id}")
    unknown = await browsers[0].post("/webhooks/987654321/replay",
                                     {"csrf_token": overview.csrf_token})
    assert unknown.status == 404

"""Issue 29: every paged list of the wallet API (the event feed, an account's statement, a
reconciliation run's items) takes the one cursor grammar (tests/unit/test_cursors.py)
and refuses a cursor beyond its end, which it never hands out: a reader holding one
learns it at its first read instead of silently skipping what is written next."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import reconcile as reconcile_support
from tests.support.helpers import (
    call,
    complete_payment,
    deposit,
    drain_events,
    new_customer,
    sim,
)
from tests.support.reconcile import reconcile_json, today
from tests.support.stack import Stack

env = reconcile_support.env  # a database, simulator and server of the test's own

# ١٢ (Arabic-Indic), ５ (fullwidth), a trailing newline, a leading space, half a pair
UNREADABLE = ("%D9%A1%D9%A2", "%EF%BC%95", "5%0A", "%205", "5-")
FAR_BEYOND = 10**18 - 1  # the largest cursor the grammar takes


async def assert_cursor_rules(stack: Stack, path: str, last: int, of: str) -> None:
    """`path` (with `?` or `&` to append to) refuses what is not a cursor, and a cursor
    beyond `last`, its last position."""
    for after in UNREADABLE:
        status, body = await call(stack, "GET", f"{path}after={after}")
        assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", (after, body)
        assert "ASCII digits" in body["error"]["message"], body
    # Far enough that nothing written meanwhile (a payment a worker completes) reaches it.
    for beyond in (last + 1000, FAR_BEYOND):
        status, body = await call(stack, "GET", f"{path}after={beyond}")
        assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", (beyond, body)
        assert f"after={beyond} is beyond the end of {of}" in body["error"]["message"], body


# ---- the event feed ----------------------------------------------------------------------

async def test_event_feed_refuses_what_is_not_a_cursor_and_beyond_its_end(stack: Stack) -> None:
    _, end = await drain_events(stack, "0")
    status, page = await call(stack, "GET", f"/v1/events?after={end}")
    assert status == 200 and int(page["next"]) >= int(end), page  # the end itself is fine
    await assert_cursor_rules(stack, "/v1/events?", int(end), "the event feed")


async def test_reader_given_a_future_cursor_learns_it_at_once(stack: Stack) -> None:
    """Was: 200 `{"events": [], "next": <the future cursor>}`, and the events then given
    the seqs up to it never reached a reader that followed `next`."""
    _, end = await drain_events(stack, "0")
    future = str(int(end) + 1000)
    status, body = await call(stack, "GET", f"/v1/events?after={future}")
    assert status == 422 and "beyond the end of the event feed" in body["error"]["message"]
    customer = new_customer()
    paid = [(await complete_payment(stack, customer, "1.00"))["paymentId"] for _ in range(4)]
    mine: list[str] = []
    cursor = end
    for _ in range(100):  # bounded: the feed shows committed events within EVENTS_HOLD_MS
        seen, cursor = await drain_events(stack, cursor)
        mine += [e["paymentId"] for e in seen if e["customerId"] == customer]
        if len(mine) == len(paid):
            break
        await asyncio.sleep(0.05)
    assert mine == paid  # what the future cursor would have skipped
    status, body = await call(stack, "GET", f"/v1/events?after={future}")
    assert status == 422, body  # still beyond: refused every time, never echoed


async def test_old_form_cursor_is_taken_within_the_feed_and_refused_beyond_it(
        stack: Stack) -> None:
    await complete_payment(stack, new_customer(), "1.00")
    await drain_events(stack, "0")  # published
    async with stack.pool.acquire() as conn:
        newest = await conn.fetchrow(
            """SELECT txid::text AS txid, id FROM events WHERE seq IS NOT NULL
               ORDER BY txid DESC, id DESC LIMIT 1""")
    assert newest is not None
    for within in ("0-0", f"{newest['txid']}-{newest['id']}"):
        status, page = await call(stack, "GET", f"/v1/events?after={within}&limit=1")
        assert status == 200, page
    # Far beyond: "+1000" was reached while the test ran, when the session's workers
    # (finishing earlier tests' payments) burnt transaction ids and published events
    # (a shuffled run): a cursor a billion transactions on stays beyond the end.
    beyond = f"{int(newest['txid']) + 10**9}-0"
    status, body = await call(stack, "GET", f"/v1/events?after={beyond}")
    assert status == 422, body
    assert f"after={beyond} is beyond the end of the event feed" in body["error"]["message"]


# ---- an account's statement ----------------------------------------------------------------

async def test_statement_refuses_what_is_not_a_cursor_and_beyond_its_end(stack: Stack) -> None:
    customer, other = new_customer(), new_customer()
    await deposit(stack, customer, "1.00")
    await deposit(stack, customer, "2.00")
    await deposit(stack, other, "3.00")  # a later entry id, on another account
    path = f"/v1/accounts/{customer}/statement"
    status, page = await call(stack, "GET", path)
    assert status == 200 and len(page["entries"]) == 2, page
    last = page["entries"][-1]["id"]
    status, end = await call(stack, "GET", f"{path}?after={last}")
    assert status == 200 and end == {"entries": [], "next": str(last)}
    status, theirs = await call(stack, "GET", f"/v1/accounts/{other}/statement")
    assert status == 200 and theirs["entries"][0]["id"] > last
    # Another customer's cursor is beyond this account's end: refused, not a silent skip.
    status, body = await call(stack, "GET", f"{path}?after={theirs['next']}")
    assert status == 422 and "beyond the end of the account's statement" in \
        body["error"]["message"], body
    await assert_cursor_rules(stack, f"{path}?", last, "the account's statement")


# ---- a reconciliation run's items ------------------------------------------------------------

async def test_reconciliation_items_refuse_what_is_not_a_cursor_and_beyond_their_end(
        env: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    status, _ = await sim(env, "POST", "/sim/registries/discrepancies",
                          {"kind": "add_row", "amount": "11.00", "customerId": "770000000002"})
    assert status == 200
    code, report = await reconcile_json(env, "--from-simulator", "--date", today(),
                                        "--simulator-url", env.sim_url, capsys=capsys)
    assert code == 1 and report["items"], report
    path = f"/v1/reconciliations/{report['id']}"
    last = report["items"][-1]["id"]
    status, end = await call(env, "GET", f"{path}?after={last}")
    assert status == 200 and end["items"] == [] and "nextItemsAfter" not in end, end
    await assert_cursor_rules(env, f"{path}?", last, f"reconciliation {report['id']}'s items")

"""The webhook outbox's SQL (sql/functions/webhooks.sql), on a database with no sender:
staged in the event's transaction, leased to one sender at a time, a failure counted
only for the claim that holds the row, given up past the maximum age, replayed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from mpp_server.domain.outcomes import WebhookAttemptOutcome as Attempt
from mpp_server.domain.outcomes import WebhookReplayOutcome as Replay
from tests.support.helpers import new_customer

MAX_AGE_S = 3600.0


@pytest.fixture
async def conn(isolated_db: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(isolated_db)
    yield connection
    await connection.close()


async def stage(conn: asyncpg.Connection) -> int:
    event_id: int = await conn.fetchval(
        "INSERT INTO events (type, customer_id, payment_id, amount_tiyn) "
        "VALUES ('payment.completed', $1, 'p-webhook', 100) RETURNING id", new_customer())
    return event_id


async def claim(conn: asyncpg.Connection, batch: int, lease_s: float,
                max_age_s: float = MAX_AGE_S) -> dict[int, int]:
    rows = await conn.fetch("SELECT * FROM webhook_claim($1, $2, $3)", batch, lease_s,
                            max_age_s)
    return {r["event_id"]: r["attempt"] for r in rows}


async def done(conn: asyncpg.Connection, event_id: int, attempt: int, delivered: bool, *,
               retry_in_s: float = 1.0, max_age_s: float = MAX_AGE_S) -> Attempt:
    return Attempt(await conn.fetchval(
        "SELECT outcome FROM webhook_attempt_done($1, $2, $3, $4, $5, $6, false)",
        event_id, attempt, delivered, "HTTP_200" if delivered else "HTTP_500", retry_in_s,
        max_age_s))


async def delivery(conn: asyncpg.Connection, event_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM webhook_deliveries WHERE event_id = $1",
                              event_id)
    assert row is not None
    return row


async def test_a_delivery_is_staged_in_the_events_own_transaction(
        conn: asyncpg.Connection) -> None:
    tx = conn.transaction()
    await tx.start()
    rolled_back = await stage(conn)
    await tx.rollback()
    assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE event_id = $1",
                               rolled_back) == 0
    event_id = await stage(conn)
    row = await delivery(conn, event_id)
    created_at = await conn.fetchval("SELECT created_at FROM events WHERE id = $1", event_id)
    assert (row["status"], row["attempts"]) == ("PENDING", 0)
    assert row["pending_since"] == row["next_attempt_at"] == created_at  # due at once


async def test_a_claimed_delivery_is_leased_to_one_sender_until_its_lease_ends(
        conn: asyncpg.Connection, isolated_db: str) -> None:
    staged = {await stage(conn) for _ in range(3)}
    other = await asyncpg.connect(isolated_db)
    try:
        first, second = await asyncio.gather(claim(conn, 2, 0.5), claim(other, 2, 0.5))
        assert not set(first) & set(second)
        assert set(first) | set(second) == staged
        assert await claim(other, 10, 0.5) == {}  # every row is leased
        deadline = asyncio.get_running_loop().time() + 10
        again: dict[int, int] = {}
        while len(again) < 3:  # each lease ends: due again, the attempt counted
            assert asyncio.get_running_loop().time() < deadline
            again |= await claim(other, 10, 60)
            await asyncio.sleep(0.05)
    finally:
        await other.close()
    assert again == dict.fromkeys(staged, 2)


async def test_a_failure_counts_only_for_the_claim_that_holds_the_row_a_2xx_always(
        conn: asyncpg.Connection) -> None:
    event_id = await stage(conn)
    assert await claim(conn, 1, 0) == {event_id: 1}  # a lease of 0: a stalled sender
    assert await claim(conn, 1, 60) == {event_id: 2}  # another sender took it over
    leased = await delivery(conn, event_id)
    assert await done(conn, event_id, 1, delivered=False) is Attempt.SUPERSEDED
    assert await delivery(conn, event_id) == leased  # the late failure changed nothing
    assert await done(conn, event_id, 1, delivered=True) is Attempt.DELIVERED
    assert await done(conn, event_id, 2, delivered=False) is Attempt.SUPERSEDED
    row = await delivery(conn, event_id)
    assert row["status"] == "DELIVERED" and row["delivered_at"] is not None


async def test_a_failure_is_retried_after_its_backoff(conn: asyncpg.Connection) -> None:
    event_id = await stage(conn)
    assert await claim(conn, 1, 60) == {event_id: 1}
    assert await done(conn, event_id, 1, delivered=False, retry_in_s=30) is Attempt.RETRY
    row = await delivery(conn, event_id)
    assert row["status"] == "PENDING" and row["last_result"] == "HTTP_500"
    assert 29 < (row["next_attempt_at"] - await conn.fetchval("SELECT now()")
                 ).total_seconds() <= 30
    assert await claim(conn, 1, 60) == {}  # not due before its backoff ends


async def test_a_failure_whose_retry_falls_past_the_max_age_gives_up_and_replay_restarts_it(
        conn: asyncpg.Connection) -> None:
    event_id = await stage(conn)
    await claim(conn, 1, 60)
    outcome = await done(conn, event_id, 1, delivered=False, retry_in_s=10, max_age_s=5)
    assert outcome is Attempt.GIVEN_UP
    given_up = await delivery(conn, event_id)
    assert given_up["status"] == "GIVEN_UP" and given_up["given_up_at"] is not None

    replayed = await conn.fetchrow("SELECT outcome, (delivery).* FROM webhook_replay($1)",
                                   event_id)
    assert replayed is not None and Replay(replayed["outcome"]) is Replay.REPLAYED
    assert replayed["status"] == "PENDING" and replayed["replays"] == 1
    assert replayed["pending_since"] > given_up["pending_since"]  # a fresh WEBHOOK_MAX_AGE_S
    assert await claim(conn, 1, 60, max_age_s=5) == {event_id: 2}
    assert Replay(await conn.fetchval("SELECT outcome FROM webhook_replay($1)",
                                      event_id)) is Replay.ALREADY_PENDING
    assert Replay(await conn.fetchval("SELECT outcome FROM webhook_replay(-1)")
                  ) is Replay.UNKNOWN


async def test_a_delivery_nobody_sent_in_time_is_given_up_unsent(
        conn: asyncpg.Connection) -> None:
    event_id = await stage(conn)
    # As if no server had a WEBHOOK_URL for longer than the maximum age.
    await conn.execute("UPDATE webhook_deliveries SET pending_since = now() - interval '10 s' "
                       "WHERE event_id = $1", event_id)
    assert await claim(conn, 10, 60, max_age_s=5) == {}  # never sent that late
    given_up = await conn.fetch("SELECT * FROM webhooks_give_up_expired(5)")
    assert [r[0] for r in given_up] == [event_id]
    row = await delivery(conn, event_id)
    assert (row["status"], row["last_result"], row["attempts"]) == (
        "GIVEN_UP", "NOT_ATTEMPTED", 0)


async def test_a_status_move_the_machine_does_not_list_is_refused(
        conn: asyncpg.Connection) -> None:
    event_id = await stage(conn)
    await claim(conn, 1, 60)
    assert await done(conn, event_id, 1, delivered=True) is Attempt.DELIVERED
    with pytest.raises(asyncpg.IntegrityConstraintViolationError,
                       match="illegal webhook status move: DELIVERED -> GIVEN_UP"):
        await conn.execute("UPDATE webhook_deliveries SET status = 'GIVEN_UP' "
                           "WHERE event_id = $1", event_id)

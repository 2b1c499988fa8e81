"""Money records cannot be rewritten (issue 26): ledger transfers and entries and the
exchange journal are append-only for every role, the owner's too; payments, refunds,
top-ups and accounts are never deleted; and the server's role (mpp_app, migration 016)
owns nothing and holds only the privileges sql/functions/privileges.sql derives from
those triggers."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mpp_server import migrate
from mpp_server.devtools.devdb import fresh_database
from tests.support.helpers import complete_payment, new_customer
from tests.support.stack import Stack, server_role_dsn

APPEND_ONLY = ("transfers", "entries", "exchange_journal")
NEVER_DELETED = ("payments", "refunds", "deposits", "topups", "topup_refunds", "accounts",
                 "disputes")


@pytest.fixture
async def owner(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the owner (the superuser of the test cluster), with a payment and
    its ledger rows in the books."""
    await complete_payment(stack, new_customer(), "3.00")
    conn = await asyncpg.connect(stack.database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def server(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(await server_role_dsn(stack.database_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize("table", APPEND_ONLY[:2])
@pytest.mark.parametrize("statement", ["UPDATE {t} SET id = id", "DELETE FROM {t}",
                                       "TRUNCATE {t} CASCADE"])
async def test_ledger_rows_are_append_only_even_for_the_owner(
        owner: asyncpg.Connection, table: str, statement: str) -> None:
    before = await owner.fetchval(f"SELECT count(*) FROM {table}")
    assert before > 0
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await owner.execute(statement.format(t=table))
    assert await owner.fetchval(f"SELECT count(*) FROM {table}") == before


# A row of each, so that the delete has something to refuse (rolled back with it).
PROBE_ROWS = {
    "payments": "INSERT INTO payments (payment_id, customer_id, qr_code_type, status, "
                "merchant) VALUES ('probe', '770000000000', 'Dynamic', 'SCANNED', '{}')",
    "refunds": "INSERT INTO refunds (refund_id, payment_id, customer_id, amount_tiyn, status, "
               "result_code, result_message) VALUES ('probe', 'p', 'c', 0, 'RECEIVED', 'X', "
               "'x')",
    "deposits": "INSERT INTO deposits (deposit_id, customer_id, amount_tiyn) "
                "VALUES ('probe', 'c', 100)",
    "topups": "INSERT INTO topups (topup_id, customer_id, provider, amount_tiyn, expires_at, "
              "next_check_at) VALUES ('probe', 'c', 'kapital', 100, now(), now())",
    "topup_refunds": "INSERT INTO topups (topup_id, customer_id, provider, amount_tiyn, "
                     "expires_at, next_check_at) VALUES ('probe', 'c', 'kapital', 100, now(), "
                     "now()); INSERT INTO topup_refunds (refund_id, topup_id, amount_tiyn) "
                     "VALUES ('probe', 'probe', 100)",
    "accounts": "INSERT INTO accounts (kind, customer_id) VALUES ('customer', 'probe')",
    "disputes": "INSERT INTO payments (payment_id, customer_id, qr_code_type, status, "
                "merchant) VALUES ('probe', '770000000000', 'Dynamic', 'SCANNED', '{}'); "
                "INSERT INTO disputes (dispute_id, payment_id, customer_id, reason, "
                "amount_tiyn, status, due_at) VALUES ('probe', 'probe', '770000000000', "
                "'probe', 100, 'OPEN', now())",
}


@pytest.mark.parametrize("table", NEVER_DELETED)
async def test_money_records_are_never_deleted_even_by_the_owner(
        owner: asyncpg.Connection, table: str) -> None:
    with pytest.raises(asyncpg.RaiseError, match="never deleted"):
        async with owner.transaction():
            await owner.execute(PROBE_ROWS[table])
            await owner.execute(f"DELETE FROM {table}")
    with pytest.raises(asyncpg.RaiseError, match="never deleted"):
        await owner.execute(f"TRUNCATE {table} CASCADE")


async def test_payments_still_change_state(owner: asyncpg.Connection) -> None:
    """Never deleted is not frozen: the state machine updates its rows."""
    updated = await owner.execute("UPDATE payments SET updated_at = updated_at")
    assert updated != "UPDATE 0"


async def test_journal_rows_are_append_only(owner: asyncpg.Connection) -> None:
    await owner.execute("""INSERT INTO exchange_journal (occurred_at, direction, counterparty,
                               operation, duration_ms) VALUES (now(), 'out', 'kaspi', 'scan', 1)""")
    for statement in ("UPDATE exchange_journal SET duration_ms = 2",
                      "DELETE FROM exchange_journal", "TRUNCATE exchange_journal"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await owner.execute(statement)


class _RolledBack(Exception):
    """Ends a transaction a test opened so that the session's feed stays as it was."""


@pytest.mark.parametrize(("table", "insert"), [
    ("inbound_requests",
     """INSERT INTO inbound_requests (received_at, source_ip, method, path, headers,
                                      body_masked, http_status)
        VALUES (now() - make_interval(days => $1), '127.0.0.1', 'POST', '/refund', '{}',
                '{}', 200) RETURNING id"""),
    ("events",
     """INSERT INTO events (created_at, type, customer_id)
        VALUES (now() - make_interval(days => $1), 'payment.completed', 'c') RETURNING id"""),
])
async def test_exchange_logs_keep_rows_at_least_thirty_days(
        owner: asyncpg.Connection, table: str, insert: str) -> None:
    with pytest.raises(_RolledBack):
        async with owner.transaction():
            young = await owner.fetchval(insert, 29)
            old = await owner.fetchval(insert, 31)
            with pytest.raises(asyncpg.RaiseError, match="kept at least 30 days"):
                async with owner.transaction():
                    await owner.execute(f"DELETE FROM {table} WHERE id = $1", young)
            with pytest.raises(asyncpg.RaiseError):
                async with owner.transaction():
                    await owner.execute(f"TRUNCATE {table}")
            assert await owner.execute(f"DELETE FROM {table} WHERE id = $1",
                                       old) == "DELETE 1"
            raise _RolledBack


async def test_inbound_log_rows_are_never_updated(owner: asyncpg.Connection) -> None:
    logged = await owner.fetchval(
        """INSERT INTO inbound_requests (source_ip, method, path, headers, body_masked,
                                         http_status)
           VALUES ('127.0.0.1', 'POST', '/refund', '{}', '{}', 200) RETURNING id""")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await owner.execute("UPDATE inbound_requests SET http_status = 500 WHERE id = $1",
                            logged)


# ---- the server's role ----------------------------------------------------------------

@pytest.mark.parametrize("statement", [
    "UPDATE entries SET amount_tiyn = amount_tiyn",
    "UPDATE transfers SET amount_tiyn = amount_tiyn",
    "DELETE FROM payments", "DELETE FROM refunds", "DELETE FROM topups",
    "DELETE FROM accounts", "UPDATE exchange_journal SET duration_ms = 0",
    "DELETE FROM exchange_journal", "DELETE FROM inbound_requests",
    "DELETE FROM events", "TRUNCATE notify_outbox",
    "INSERT INTO schema_migrations (name, sha256) VALUES ('999_x.sql', 'x')",
    "CREATE TABLE sneaked_in (id int)",
    "SELECT exchange_journal_partition('2020-01-01')", "SELECT server_role_grant()",
])
async def test_server_role_cannot_rewrite_history(server: asyncpg.Connection,
                                                  statement: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await server.execute(statement)


@pytest.mark.parametrize("statement", [
    "ALTER TABLE entries DISABLE TRIGGER entries_append_only",
    "DROP TRIGGER payments_no_delete ON payments",
    "ALTER TABLE payments DROP CONSTRAINT refunds_within_payment",
])
async def test_server_role_owns_nothing(server: asyncpg.Connection, statement: str) -> None:
    assert await server.fetchval(
        """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND pg_has_role(current_user, c.relowner, 'USAGE')""") == 0
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
        await server.execute(statement)


async def test_server_role_may_ask_for_retention_but_not_below_thirty_days(
        server: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.RaiseError, match="below 30 days are refused"):
        await server.fetchrow("SELECT * FROM retention_maintain(29, 90, 10)")


async def test_privileges_follow_the_triggers_on_every_table(pool: Any) -> None:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT c.relname AS name,
                      has_table_privilege('mpp_app', c.oid, 'UPDATE') AS can_update,
                      has_table_privilege('mpp_app', c.oid, 'DELETE') AS can_delete,
                      has_table_privilege('mpp_app', c.oid, 'TRUNCATE') AS can_truncate
                 FROM pg_class c
                WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
                  AND NOT c.relispartition""")
    table = {r["name"]: (r["can_update"], r["can_delete"]) for r in rows}
    assert not any(r["can_truncate"] for r in rows)
    for name in (*APPEND_ONLY, "audit_journal", "inbound_requests", "schema_migrations"):
        assert table[name] == (False, False), name
    for name in (*NEVER_DELETED, "events"):
        assert table[name] == (True, False), name
    assert table["notify_outbox"] == (True, True)


async def test_a_later_migrations_table_gets_privileges_by_its_trigger(
        admin_dsn: str, tmp_path: Path) -> None:
    """Whatever order migrations arrive in, `migrate` grants by the rule."""
    sql = tmp_path / "sql"
    shutil.copytree(migrate.SQL_DIR, sql)
    async with fresh_database(admin_dsn, "mpp_priv") as dsn:
        (sql / "migrations" / "999_disputes.sql").write_text(
            "CREATE TABLE probe_disputes (id int PRIMARY KEY, status text);\n"
            "CREATE TRIGGER probe_disputes_no_delete BEFORE DELETE ON probe_disputes "
            "FOR EACH ROW EXECUTE FUNCTION refuse_delete();\n"
            "CREATE TABLE probe_outbox (id int PRIMARY KEY);\n")
        assert (await migrate.migrate(dsn, sql)).migrations == ["999_disputes.sql"]
        conn = await asyncpg.connect(dsn)
        try:
            granted = {name: await conn.fetchval(
                "SELECT array_agg(p ORDER BY p) FROM unnest(ARRAY['SELECT', 'INSERT', "
                "'UPDATE', 'DELETE']) p WHERE has_table_privilege('mpp_app', $1, p)", name)
                for name in ("probe_disputes", "probe_outbox")}
        finally:
            await conn.close()
    assert granted == {"probe_disputes": ["INSERT", "SELECT", "UPDATE"],
                       "probe_outbox": ["DELETE", "INSERT", "SELECT", "UPDATE"]}

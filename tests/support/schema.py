"""What the schema allows, read from PostgreSQL's catalog: a column's single-column rule
is a table CHECK or, on the tables every payment writes, its domain's constraint
(sql/migrations/022_domains.sql)."""

from __future__ import annotations

import re

from mpp_server.db import Conn

_COLUMN_CHECKS = """
    SELECT pg_get_constraintdef(c.oid)
      FROM pg_attribute a
      JOIN pg_constraint c ON c.contypid = a.atttypid AND c.contype = 'c'
     WHERE a.attrelid = $1::regclass AND a.attname = $2
    UNION ALL
    SELECT pg_get_constraintdef(c.oid)
      FROM pg_attribute a
      JOIN pg_constraint c ON c.conrelid = a.attrelid AND c.contype = 'c'
                          AND c.conkey = ARRAY[a.attnum]
     WHERE a.attrelid = $1::regclass AND a.attname = $2"""


async def allowed_values(conn: Conn, table: str, column: str) -> set[str]:
    """The values the one CHECK on `table.column` lists, in either form PostgreSQL prints:
    x IN ('a', 'b') or x = ANY ('{a,b}'::text[])."""
    checks = [row[0] for row in await conn.fetch(_COLUMN_CHECKS, table, column)]
    assert len(checks) == 1, checks
    listed = re.search(r"'\{([^}]*)\}'::text\[\]", checks[0])
    if listed:
        return set(listed.group(1).split(","))
    return set(re.findall(r"'(\w+)'::text", checks[0]))

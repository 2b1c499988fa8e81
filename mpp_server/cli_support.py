"""What the operators' commands that work on DATABASE_URL share (`webhooks`,
`disputes`): one connection, and one exit status when the database is away."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from mpp_server import db
from mpp_server.config import Settings
from mpp_server.db import Conn

EXIT_USAGE, EXIT_UNAVAILABLE = 2, 3


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The arguments, or the exit status argparse chose (0 after --help, else
    EXIT_USAGE: it has printed why)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else EXIT_USAGE


def run_on_database(prog: str, work: Callable[[Conn], Awaitable[int]]) -> int:
    """`work`'s exit status, run on one connection to DATABASE_URL; EXIT_UNAVAILABLE,
    with a message, when the database cannot be reached."""
    try:
        return asyncio.run(_run(Settings().database_url, work))
    except Exception as exc:
        if not db.is_unavailable(exc):
            raise
        print(f"{prog}: the database could not be reached: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


async def _run(dsn: str, work: Callable[[Conn], Awaitable[int]]) -> int:
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await work(conn)
    finally:
        await pool.close()

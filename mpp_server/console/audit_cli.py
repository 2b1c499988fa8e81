"""`python -m mpp_server audit verify [--anchor ID:HASH]`: walk the audit journal's hash
chain (mpp_server/audit.py).

Exit status: 0 the chain holds (the row count and the head are printed: keep the head
somewhere else, and pass it as --anchor later, to notice a chain rewritten from some row
on); 1 a row does not fit (the first one is named, with why); 2 bad arguments; 3 the
database could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

import asyncpg

from mpp_server import audit, db
from mpp_server.config import Settings

EXIT_HOLDS, EXIT_BROKEN, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3
PROG = "python -m mpp_server audit"
_ANCHOR = re.compile(r"^([1-9][0-9]{0,17}):([0-9a-f]{64})$")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The console's audit journal.")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify", help="check every row's hash against the row and the one before it; "
                       "exit 0 when the chain holds, 1 naming the first row that does not")
    verify.add_argument("--anchor", metavar="ID:HASH",
                        help="a head printed by an earlier verify: that row must still "
                             "have that hash")
    return parser


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    anchor = None
    if args.anchor:
        match = _ANCHOR.match(args.anchor)
        if match is None:
            print(f"{PROG}: --anchor is ID:HASH (a row id, 64 hex digits)", file=sys.stderr)
            return EXIT_BAD_INPUT
        anchor = (int(match.group(1)), match.group(2))
    try:
        verdict = asyncio.run(db.with_connection(
            Settings().database_url, lambda conn: audit.verify(conn, anchor)))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{PROG}: database: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if verdict.bad_id is not None:
        print(f"audit journal: row {verdict.bad_id} does not fit: {verdict.why} "
              f"(the {verdict.count} rows before it hold)")
        return EXIT_BROKEN
    print(f"audit journal: {verdict.count} rows, the chain holds; head "
          f"{verdict.head_id}:{verdict.head_hash}")
    return EXIT_HOLDS

"""`python -m mpp_server operators add|disable|unlock|password|list`: the console's operators,
managed from a server's command line (whoever may run it there may already read the
database). Each change is journaled like a console action, `via` cli, under the system
user who ran it. The password is read from standard input, never from the arguments
(they show in `ps` and in shell histories): typed twice at a terminal, else one line.

Exit status: 0 done, 2 refused (bad login, role or password; an unknown or existing
operator), 3 the database could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from mpp_server import audit, db
from mpp_server.config import Settings
from mpp_server.console import actions, operators
from mpp_server.console.formatting import kz_time
from mpp_server.console.operators import OperatorError, Role

EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 2, 3
PROG = "python -m mpp_server operators"
T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Operators of the console (ADMIN_LISTEN): viewers look, "
                               "operators act, admins also manage operators.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create an operator; the password is read from "
                                          "standard input")
    add.add_argument("login")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    for name, text in (("disable", "disable an operator at once (their sessions end)"),
                       ("unlock", "end a lockout after five failed sign-ins"),
                       ("password", "give an operator a new password, read from standard "
                                    "input (their sessions end)")):
        commands.add_parser(name, help=text).add_argument("login")
    commands.add_parser("list", help="every operator, enabled first")
    return parser


def read_password() -> str:
    """From standard input: at a terminal typed twice (not echoed), else its first line."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise OperatorError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    dsn = Settings().database_url
    try:
        if args.command == "add":
            login = operators.check_login(operators.normalize_login(args.login))
            password_hash = asyncio.run(operators.hash_password(read_password()))
            operator_id = _run(dsn, lambda conn: actions.add_operator(
                conn, audit.system_actor(), login, Role(args.role), password_hash))
            print(f"operator {login} ({args.role}) added, id {operator_id}")
        elif args.command == "list":
            for row in _run(dsn, operators.list_all):
                print(_line(row))
        elif args.command == "password":
            login = operators.normalize_login(args.login)
            password_hash = asyncio.run(operators.hash_password(read_password()))
            _run(dsn, lambda conn: actions.set_operator_password(conn, audit.system_actor(), login,
                                                                 password_hash))
            print(f"operator {login}: new password set, sessions ended")
        else:
            login = operators.normalize_login(args.login)
            action = actions.disable_operator if args.command == "disable" \
                else actions.unlock_operator
            _run(dsn, lambda conn: action(conn, audit.system_actor(), login))
            print(f"operator {login} {args.command}d")
    except OperatorError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{PROG}: database: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _run(dsn: str, work: Callable[[db.Conn], Awaitable[T]]) -> T:
    return asyncio.run(db.with_connection(dsn, work))


def _line(row: asyncpg.Record) -> str:
    state = ("disabled " + kz_time(row["disabled_at"]) if row["disabled_at"]
             else "locked until " + kz_time(row["locked_until"]) if row["locked"]
             else "enabled")
    return (f"{row['login']:24} {row['role']:9} {state:32} last sign-in "
            f"{kz_time(row['last_sign_in_at'])}")

"""`python -m mpp_server topups resolve-refund REFUND_ID --done|--not-done --by NAME
--reason TEXT`: a person's word on a refund to the card whose outcome is UNKNOWN (an
attempt went unanswered and the acquirer's books do not say), after asking the bank
(docs/runbook.md, MppTopupRefundUnknown). --done: the bank did it (COMPLETED); --not-done:
it did not (REFUSED: the money goes back to the wallet). The audit journal gets its row.
Exit 0 resolved, 2 bad input or not UNKNOWN, 3 the database unreachable."""

from __future__ import annotations

import argparse
import sys

from mpp_server import audit
from mpp_server.cli_support import EXIT_USAGE, parse, run_on_database
from mpp_server.db import Conn
from mpp_server.domain import topup_refunds
from mpp_server.domain.outcomes import TopupRefundResolution
from mpp_server.reconcile.cli import operator_note

EXIT_DONE = 0  # 2, 3: cli_support.EXIT_USAGE, EXIT_UNAVAILABLE
PROG = "python -m mpp_server topups"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description="Top-ups by card: an operator's actions.")
    commands = parser.add_subparsers(dest="command", required=True)
    resolve = commands.add_parser(
        "resolve-refund", help="resolve an UNKNOWN refund to the card, after asking the bank")
    resolve.add_argument("refund_id")
    outcome = resolve.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--done", action="store_true", help="the bank refunded the card")
    outcome.add_argument("--not-done", action="store_true", help="it did not: money back "
                                                                 "to the wallet")
    resolve.add_argument("--by", required=True, help="who asked the bank")
    resolve.add_argument("--reason", required=True, help="what the bank said (its reference)")
    return parser


def main(argv: list[str]) -> int:
    args = parse(_parser(), argv)
    if isinstance(args, int):
        return args
    note = operator_note(args.by, args.reason)
    if isinstance(note, str):
        print(f"{PROG}: {note}", file=sys.stderr)
        return EXIT_USAGE
    by, reason = note

    async def work(conn: Conn) -> int:
        result = await topup_refunds.resolve(conn, args.refund_id, bool(args.done),
                                             audit.system_actor(by), reason)
        if result is TopupRefundResolution.NOT_UNKNOWN:
            print(f"{PROG}: refund {args.refund_id!r} is not UNKNOWN: nothing changed",
                  file=sys.stderr)
            return EXIT_USAGE
        print(f"refund {args.refund_id} resolved {result.value} by {by}")
        return EXIT_DONE

    return run_on_database(PROG, work)

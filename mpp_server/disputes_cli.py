"""`python -m mpp_server disputes resolve DISPUTE_ID --resolution REJECTED|REFUNDED
--note TEXT [--by NAME]`: an operator answers a customer's dispute, journaled in the
audit journal (the console's action calls the same function, domain/disputes.py
resolve); `disputes list`: the OPEN ones, the soonest due first.

Exit status: 0 done (resolved, or already resolved so), 1 refused (no such dispute,
resolved otherwise, REFUNDED while Kaspi has refunded nothing of the payment), 2 bad
arguments, 3 the database could not be reached. Texts a customer wrote are printed
JSON-escaped: a reason is never interpreted by the terminal.
"""

from __future__ import annotations

import argparse
import json

from mpp_server import audit
from mpp_server.cli_support import EXIT_USAGE, parse, run_on_database
from mpp_server.db import Conn
from mpp_server.domain import disputes
from mpp_server.domain.outcomes import DisputeResolution
from mpp_server.errors import WalletError
from mpp_server.logs import mask_customer

EXIT_OK, EXIT_REFUSED = 0, 1  # 2, 3: cli_support.EXIT_USAGE, EXIT_UNAVAILABLE
# What an operator may decide; WITHDRAWN is the customer's (the wallet API).
OPERATOR_RESOLUTIONS = (DisputeResolution.REJECTED, DisputeResolution.REFUNDED)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server disputes",
        description="Customers' disputes of payments (DATABASE_URL): answer them within "
                    "DISPUTE_RESPONSE_HOURS.")
    sub = parser.add_subparsers(dest="command", required=True)
    resolve = sub.add_parser("resolve", help="resolve an OPEN dispute")
    resolve.add_argument("dispute_id", metavar="DISPUTE_ID")
    resolve.add_argument("--resolution", required=True,
                         choices=[r.value for r in OPERATOR_RESOLUTIONS],
                         help="REJECTED: the complaint is unfounded; REFUNDED: Kaspi "
                              "refunded the payment (some of it at least)")
    resolve.add_argument("--note", required=True, help="why (shown to the wallet)")
    resolve.add_argument("--by", help="who resolves it (the audit journal's actor; "
                                      "default: your system user)")
    listing = sub.add_parser("list", help="the OPEN disputes, the soonest due first")
    listing.add_argument("--limit", type=int, default=100)
    return parser


def main(argv: list[str]) -> int:
    args = parse(_parser(), argv)
    if isinstance(args, int):
        return args
    if args.command == "resolve" and not args.note.strip():
        print("disputes: --note must say why", flush=True)
        return EXIT_USAGE

    async def work(conn: Conn) -> int:
        if args.command == "resolve":
            return await _resolve(conn, args)
        for row in await disputes.open_by_due(conn, max(1, min(args.limit,
                                                               disputes.LIST_MAX))):
            print(f"{row['dispute_id']}\tdue {row['due_at']:%Y-%m-%d %H:%M:%S%z}"
                  f"{' OVERDUE' if row['overdue'] else ''}\tpayment {row['payment_id']}\t"
                  f"customer {mask_customer(row['customer_id'])}\t"
                  f"reason {json.dumps(row['reason'])}")
        return EXIT_OK

    return run_on_database("disputes", work)


async def _resolve(conn: Conn, args: argparse.Namespace) -> int:
    try:
        row = await disputes.resolve(conn, args.dispute_id, DisputeResolution(args.resolution),
                                     args.note.strip(), audit.system_actor(args.by))
    except WalletError as exc:
        print(f"disputes: refused: {exc.message}")
        return EXIT_REFUSED
    print(f"dispute {row['dispute_id']}: RESOLVED as {row['resolution']} by "
          f"{row['resolved_by']} at {row['resolved_at']:%Y-%m-%d %H:%M:%S%z}")
    return EXIT_OK

"""`python -m mpp_server webhooks replay EVENT_ID`: send a delivery again (one given up
after WEBHOOK_MAX_AGE_S, or one the wallet backend lost); `webhooks list [--status S]`:
the deliveries not made, the longest waiting first.

Exit status: 0 done (replayed, or already being delivered), 1 nothing to replay (no such
delivery, or its event is no longer kept), 2 bad arguments, 3 the database could not be
reached.
"""

from __future__ import annotations

import argparse

from mpp_server import audit
from mpp_server.cli_support import parse, run_on_database
from mpp_server.db import Conn
from mpp_server.domain.outcomes import WebhookReplayOutcome, WebhookStatus
from mpp_server.webhooks import store

EXIT_OK, EXIT_NOTHING = 0, 1  # 2, 3: cli_support.EXIT_USAGE, EXIT_UNAVAILABLE

_SAID = {
    WebhookReplayOutcome.REPLAYED: "due now: the server's senders deliver it at their next "
                                   "poll",
    WebhookReplayOutcome.ALREADY_PENDING: "already waiting to be delivered: nothing to do",
    WebhookReplayOutcome.UNKNOWN: "no webhook delivery for that event id",
    WebhookReplayOutcome.EVENT_GONE: "its event is no longer kept (retention): nothing to "
                                     "send",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server webhooks",
        description="Webhook deliveries to WEBHOOK_URL (DATABASE_URL's outbox).")
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="send a delivery again (given up, or delivered)")
    replay.add_argument("event_id", type=int, metavar="EVENT_ID",
                        help="the event's id (the webhook-id header)")
    replay.add_argument("--by", help="who asks (the audit journal's actor; default: your "
                                     "system user)")
    listing = sub.add_parser("list", help="deliveries by status, the longest waiting first")
    listing.add_argument("--status", choices=[s.value for s in WebhookStatus],
                         default=WebhookStatus.GIVEN_UP.value)
    listing.add_argument("--limit", type=int, default=100)
    return parser


def main(argv: list[str]) -> int:
    args = parse(_parser(), argv)
    if isinstance(args, int):
        return args

    async def work(conn: Conn) -> int:
        if args.command == "replay":
            outcome, _ = await store.replay(conn, args.event_id,
                                            audit.system_actor(args.by))
            print(f"webhook {args.event_id}: {_SAID[outcome]}")
            return EXIT_NOTHING if outcome in (WebhookReplayOutcome.UNKNOWN,
                                               WebhookReplayOutcome.EVENT_GONE) else EXIT_OK
        for row in await store.listed(conn, WebhookStatus(args.status), args.limit):
            print(f"{row['event_id']}\t{row['type'] or '(event gone)'}\t"
                  f"since {row['pending_since']:%Y-%m-%d %H:%M:%S%z}\t"
                  f"attempts {row['attempts']}\t{row['last_result'] or ''}")
        return EXIT_OK

    return run_on_database("webhooks", work)

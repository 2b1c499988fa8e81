"""The webhook outbox's sender: every delivery staged by the trigger on events
(sql/functions/webhooks.sql) is POSTed to WEBHOOK_URL until the receiver answers 2xx,
at least once, by whichever server process claims it.

The lease discipline, so that several processes share the outbox with no double sends
in flight and nothing held across the receiver's call:
1. claim (webhook_claim): one short statement moves each due row `lease_s` into the
   future and counts the attempt, and commits. No other sender takes the row meanwhile.
   The event is then read (the feed's own query) and the connection goes back.
2. call the receiver with no connection, transaction or lock held; the call's timeout
   (WEBHOOK_TIMEOUT_MS) ends LEASE_MARGIN_S before the lease does.
3. record (webhook_attempt_done): a 2xx is DELIVERED whoever holds the lease; a failure
   counts only for the claim that still holds the row, which is due again after the
   backoff (the first within 5 s, doubling to WEBHOOK_BACKOFF_MAX_MS) or GIVEN_UP when
   that would be past WEBHOOK_MAX_AGE_S.
A sender killed after 1 leaves the row due again when its lease ends: another process
(or this one, restarted) sends it, with the same webhook-id. A receiver must therefore
expect a webhook twice in rare cases (a sender stalled past its lease, or killed after
the receiver answered but before step 3): it drops repeats by webhook-id.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import aiohttp
import asyncpg

from mpp_server import db
from mpp_server.domain import events
from mpp_server.domain.outcomes import WebhookAttemptOutcome
from mpp_server.http.models import EventOut, WebhookOut
from mpp_server.journal import Direction, Exchange, Journal, Refs, Started
from mpp_server.metrics import (
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_LAG,
    WEBHOOK_OLDEST_AGE,
    WEBHOOK_OUTBOX_DEPTH,
)
from mpp_server.webhooks.signing import headers

log = logging.getLogger(__name__)

# A claim's lease outlasts the call by this: reading the event before it and recording
# the result after it must fit too, or another sender would send it again meanwhile.
LEASE_MARGIN_S = 2.0
# The backoff's jitter takes up to this share off each wait, so that deliveries failed
# together (a receiver down) do not all come back at the same moment.
JITTER = 0.1
WHERE = "webhook_sender"
COUNTERPARTY = "webhook"


@dataclass(frozen=True)
class Policy:
    """WEBHOOK_* settings, in seconds (built by the wiring: services.webhook_policy)."""

    url: str
    key: bytes
    timeout_s: float
    backoff_initial_s: float
    backoff_max_s: float
    max_age_s: float
    concurrency: int
    poll_interval_s: float
    gauges_interval_s: float

    @property
    def lease_s(self) -> float:
        return self.timeout_s + LEASE_MARGIN_S

    def backoff_s(self, attempts: int) -> float:
        """The wait after the `attempts`-th failed attempt: the initial wait doubled each
        time, capped, less up to JITTER of it."""
        full: float = min(self.backoff_max_s,
                          self.backoff_initial_s * 2.0 ** min(attempts - 1, 40))
        return full * (1 - JITTER * random.random())


@dataclass(frozen=True)
class Claim:
    event_id: int
    attempt: int
    event: asyncpg.Record | None  # None: retention removed the event


@dataclass(frozen=True)
class Sent:
    delivered: bool
    result: str  # HTTP_<status>, TIMEOUT, CONNECTION_ERROR, BAD_RESPONSE, INTERNAL_ERROR


def body(event: asyncpg.Record) -> bytes:
    """The webhook's body: `{type, timestamp, data}`, data being the event as the feed
    shows it (with the receipt and the merchant's name)."""
    data = EventOut.from_row(event)
    return WebhookOut(type=data.type, timestamp=data.createdAt,
                      data=data).model_dump_json(exclude_none=True).encode()


def refs(event: asyncpg.Record) -> Refs:
    """The ids a webhook concerns, for the exchange journal."""
    return Refs(payment_id=event["payment_id"], refund_id=event["refund_id"],
                topup_id=event["topup_id"])


class WebhookSender:
    def __init__(self, pool: asyncpg.Pool, http: aiohttp.ClientSession,
                 policy: Policy, journal: Journal) -> None:
        self._pool = pool
        self._http = http
        self._policy = policy
        self._journal = journal

    async def run(self) -> None:
        """Forever: claim what is due (as many as there are free slots), deliver each in
        its own task, refresh the gauges now and then."""
        p = self._policy
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        gauges_due = 0.0
        try:
            while True:
                free = p.concurrency - len(tasks)
                claimed: list[Claim] = []
                try:
                    if loop.time() >= gauges_due:
                        await self.housekeeping()
                        gauges_due = loop.time() + p.gauges_interval_s
                    if free:
                        claimed = await self.claim(free)
                except Exception as exc:  # the database away, or a bug: next round
                    db.background_failure(WHERE, exc)
                for one in claimed:
                    task = asyncio.create_task(self._deliver_logged(one))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if free and len(claimed) < free:
                    await asyncio.sleep(p.poll_interval_s)  # nothing more is due now
                elif tasks:
                    await asyncio.wait(tasks, timeout=p.poll_interval_s,
                                       return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def claim(self, limit: int) -> list[Claim]:
        """Step 1: lease up to `limit` due deliveries (committed), then read their events."""
        p = self._policy
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT event_id, attempt FROM webhook_claim($1, $2, $3)",
                                    limit, p.lease_s, p.max_age_s)
            if not rows:
                return []
            found = await events.by_ids(conn, [r["event_id"] for r in rows])
        return [Claim(r["event_id"], r["attempt"], found.get(r["event_id"])) for r in rows]

    async def _deliver_logged(self, claim: Claim) -> None:
        try:
            await self.deliver(claim)
        except Exception as exc:  # not recorded: the row is due again after its lease
            db.background_failure(WHERE, exc)

    async def deliver(self, claim: Claim) -> WebhookAttemptOutcome:
        """Steps 2 and 3 for one claimed delivery."""
        if claim.event is None:
            sent = Sent(False, "EVENT_GONE")
        else:
            sent = await self.send(str(claim.event_id), body(claim.event), refs(claim.event))
        WEBHOOK_ATTEMPTS.labels(sent.result).inc()
        p = self._policy
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT a.outcome, (a.delivery).* "
                "FROM webhook_attempt_done($1, $2, $3, $4, $5, $6, $7) a",
                claim.event_id, claim.attempt, sent.delivered, sent.result,
                p.backoff_s(claim.attempt), p.max_age_s, claim.event is None)
        assert row is not None
        outcome = WebhookAttemptOutcome(row["outcome"])
        self._count(claim, sent, outcome, row)
        return outcome

    async def send(self, webhook_id: str, payload: bytes, concerns: Refs) -> Sent:
        """One POST, bounded by WEBHOOK_TIMEOUT_MS; redirects are not followed (a 3xx is
        not a delivery). The receiver's body is not read. Each attempt is a row of the
        exchange journal (the body is ours: no secret in it; the signature is not kept)."""
        started = Started()
        sent = await self._post(webhook_id, payload)
        status = int(sent.result[5:]) if sent.result.startswith("HTTP_") else None
        self._journal.record(Exchange(
            Direction.OUT, COUNTERPARTY, "deliver", started, started.elapsed_ms(),
            target=f"POST {self._policy.url}", refs=concerns, request_id=webhook_id,
            http_status=status, transport_error=None if status else sent.result,
            request_body=payload))
        return sent

    async def _post(self, webhook_id: str, payload: bytes) -> Sent:
        try:
            async with self._http.post(
                    self._policy.url, data=payload, allow_redirects=False,
                    headers=headers(self._policy.key, webhook_id, int(time.time()), payload),
                    timeout=aiohttp.ClientTimeout(total=self._policy.timeout_s)) as resp:
                return Sent(200 <= resp.status < 300, f"HTTP_{resp.status}")
        except TimeoutError:
            return Sent(False, "TIMEOUT")
        except aiohttp.ClientConnectionError:
            return Sent(False, "CONNECTION_ERROR")
        except aiohttp.ClientError:  # an answer that is not HTTP
            return Sent(False, "BAD_RESPONSE")
        except Exception:  # every failure is counted
            log.exception("webhook POST failed", extra={"event_id": webhook_id})
            return Sent(False, "INTERNAL_ERROR")

    def _count(self, claim: Claim, sent: Sent, outcome: WebhookAttemptOutcome,
               row: asyncpg.Record) -> None:
        where = {"event_id": claim.event_id, "attempt": claim.attempt, "result": sent.result}
        if outcome is WebhookAttemptOutcome.DELIVERED:
            WEBHOOK_DELIVERIES.labels("delivered").inc()
            WEBHOOK_LAG.observe((row["delivered_at"] - row["pending_since"]).total_seconds())
        elif outcome is WebhookAttemptOutcome.GIVEN_UP:
            WEBHOOK_DELIVERIES.labels("given_up").inc()
            log.error("webhook given up: replay it with `python -m mpp_server webhooks "
                      "replay ID` once the receiver takes it", extra=where)
        elif outcome is WebhookAttemptOutcome.RETRY:
            log.warning("webhook not delivered, will retry",
                        extra={**where, "next_attempt_at": row["next_attempt_at"].isoformat()})
        else:
            log.info("webhook attempt superseded by another", extra=where)

    async def housekeeping(self) -> None:
        """Give up what no sender delivered in time; refresh the outbox's gauges."""
        async with self._pool.acquire() as conn:
            given_up = await conn.fetch("SELECT * FROM webhooks_give_up_expired($1)",
                                        self._policy.max_age_s)
            row = await conn.fetchrow(
                """SELECT count(*) AS depth,
                          extract(epoch FROM now() - min(pending_since)) AS oldest_s
                     FROM webhook_deliveries WHERE status = 'PENDING'""")
        if given_up:
            WEBHOOK_DELIVERIES.labels("given_up").inc(len(given_up))
            log.error("webhooks given up unsent past WEBHOOK_MAX_AGE_S",
                      extra={"count": len(given_up),
                             "event_ids": [r[0] for r in given_up[:20]]})
        assert row is not None
        WEBHOOK_OUTBOX_DEPTH.set(row["depth"])
        WEBHOOK_OLDEST_AGE.set(float(row["oldest_s"] or 0))

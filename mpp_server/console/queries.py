"""What the console's pages read: a payment's whole life, a customer, a top-up. Reads
only; every change goes through console/actions.py.

`notify_attempts` is the one place a payment's notifyPayment attempts are read: each one
from the exchange journal (issue 26; indexed by payment), with Kaspi's answer or why
there was none; while the journal has none of them (not written yet, a quarter of a
second after the call, or pruned after EXCHANGE_RETENTION_DAYS), the final answer kept
on the payment. The outbox row says what is still waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from mpp_server import jsonutil
from mpp_server.db import Conn
from mpp_server.domain import accounts
from mpp_server.domain.limits import BALANCE, Level, Limits
from mpp_server.kaspi_client.codes import is_final_notify_answer

RECENT = 20  # rows of each list on the customer page


@dataclass(frozen=True)
class NotifyAttempt:
    """One notifyPayment and what came back: Kaspi's resultCode and message, or why there
    was no answer (TIMEOUT, CONNECTION_ERROR, HTTP_500...)."""

    at: datetime | None
    answer: str
    message: str
    final: bool


@dataclass(frozen=True)
class NotifyWaiting:
    """The outbox row of a notify Kaspi has not answered finally yet."""

    sent: str  # what we tell Kaspi: SUCCESS, PROCESS_FAIL, CANCELLED_BY_CLIENT
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    staged_at: datetime


@dataclass(frozen=True)
class NotifyAttempts:
    attempts: list[NotifyAttempt]
    waiting: NotifyWaiting | None
    # False when only the final answer and the outbox's counters are on record (the
    # journal has no attempt of this payment).
    each_attempt_recorded: bool = False


async def notify_attempts(conn: Conn, payment_id: str) -> NotifyAttempts:
    row = await conn.fetchrow(
        """SELECT p.kaspi_acknowledged, p.kaspi_result_code, p.kaspi_result_message,
                  -- When the final answer was applied: its event or the debit's return
                  -- are written with it; otherwise it was the payment's last change.
                  coalesce((SELECT min(e.created_at) FROM events e
                             WHERE e.payment_id = p.payment_id
                               AND e.type = 'payment.completed'),
                           (SELECT t.created_at FROM transfers t
                             WHERE t.kind = 'payment_return' AND t.reference = p.payment_id),
                           p.updated_at) AS answered_at,
                  o.result_code AS sent, o.attempts, o.last_error, o.next_attempt_at,
                  o.created_at AS staged_at
             FROM payments p LEFT JOIN notify_outbox o USING (payment_id)
            WHERE p.payment_id = $1""", payment_id)
    if row is None:
        return NotifyAttempts([], None)
    waiting = None
    if row["sent"] is not None:
        waiting = NotifyWaiting(row["sent"], row["attempts"], row["last_error"],
                                row["next_attempt_at"], row["staged_at"])
    journaled = [_journaled_attempt(r) for r in await conn.fetch(
        """SELECT occurred_at, http_status, transport_error, response_body
             FROM exchange_journal WHERE payment_id = $1 AND operation = 'notifyPayment'
            ORDER BY occurred_at, id""", payment_id)]
    if journaled:
        return NotifyAttempts(journaled, waiting, each_attempt_recorded=True)
    attempts = []
    if row["kaspi_acknowledged"]:
        attempts.append(NotifyAttempt(row["answered_at"], row["kaspi_result_code"] or "",
                                      row["kaspi_result_message"] or "", final=True))
    return NotifyAttempts(attempts, waiting)


def _journaled_attempt(row: asyncpg.Record) -> NotifyAttempt:
    """An attempt as the journal kept it: Kaspi's result, or why there was none."""
    if row["transport_error"] is not None:
        return NotifyAttempt(row["occurred_at"], row["transport_error"], "", final=False)
    if row["http_status"] >= 500:  # no answer, whatever the body says
        return NotifyAttempt(row["occurred_at"], f"HTTP_{row['http_status']}", "",
                             final=False)
    try:
        result = jsonutil.loads(row["response_body"] or "")["result"]
        code, message = str(result["resultCode"]), str(result.get("resultMessage") or "")
    except (jsonutil.JSONDecodeError, TypeError, KeyError):
        return NotifyAttempt(row["occurred_at"], f"HTTP_{row['http_status']}", "",
                             final=False)
    return NotifyAttempt(row["occurred_at"], code, message,
                         final=is_final_notify_answer(code))


@dataclass(frozen=True)
class Moment:
    """One line of a payment's or a top-up's life."""

    at: datetime
    what: str
    detail: str = ""
    tone: str = "info"  # info, ok, bad, wait: how the page colours it
    amount_tiyn: int | None = None  # the customer's side of a ledger entry, signed
    balance_after_tiyn: int | None = None
    link: str = ""  # a receipt


@dataclass
class PaymentLife:
    payment: asyncpg.Record
    refunds: list[asyncpg.Record]
    notify: NotifyAttempts
    moments: list[Moment] = field(default_factory=list)


_FINAL_TONE = {"COMPLETED": "ok", "DECLINED": "bad", "CANCELLED": "bad", "EXPIRED": "bad"}


async def payment_life(conn: Conn, payment_id: str) -> PaymentLife | None:
    payment = await conn.fetchrow(
        "SELECT *, mpp_payment_id::text AS mpp_id FROM payments WHERE payment_id = $1",
        payment_id)
    if payment is None:
        return None
    refunds = list(await conn.fetch(
        "SELECT * FROM refunds WHERE payment_id = $1 ORDER BY created_at, refund_id",
        payment_id))
    life = PaymentLife(payment, refunds, await notify_attempts(conn, payment_id))
    refund_ids = [r["refund_id"] for r in refunds]
    events = await _events(conn, "payment_id", payment_id)
    life.moments += _status_moments(payment, events)
    life.moments += await _ledger_moments(conn, [("payment_debit", payment_id),
                                                 ("payment_return", payment_id)]
                                          + [("refund_credit", r) for r in refund_ids])
    life.moments += [Moment(a.at, "Kaspi answered notifyPayment" if a.message or a.final
                            else "notifyPayment had no answer",
                            f"{a.answer}: {a.message}", "ok" if a.answer == "SUCCESS" else "bad")
                     for a in life.notify.attempts if a.at is not None]
    life.moments += [_refund_moment(r) for r in refunds]
    life.moments += _event_moments(events)
    life.moments += await _reconciliation_moments(conn, [payment_id, *refund_ids],
                                                  [payment["mpp_id"], *refund_ids])
    life.moments.sort(key=lambda m: m.at)
    return life


async def _events(conn: Conn, column: str, value: str) -> list[asyncpg.Record]:
    assert column in ("payment_id", "topup_id")
    return list(await conn.fetch(
        f"SELECT * FROM events WHERE {column} = $1 ORDER BY id", value))


def _event_moments(events: list[asyncpg.Record]) -> list[Moment]:
    return [Moment(e["created_at"], f"Event {e['type']}",
                   f"feed position {e['seq']}" if e["seq"]
                   else "in the feed from the wallet's next read")
            for e in events]


def _status_moments(payment: asyncpg.Record, events: list[asyncpg.Record]) -> list[Moment]:
    """The status changes the books have times for: the scan, the debit (PENDING), the
    final status (its event's time, else the payment's last change). CHECKED_OUT has no
    time of its own."""
    merchant = payment["merchant"] or {}
    moments = [Moment(payment["created_at"], "Scanned: SCANNED",
                      f"{payment['qr_code_type']} QR, {merchant.get('merchantName', '')}")]
    if payment["confirmed_at"] is not None:
        moments.append(Moment(payment["confirmed_at"], "Confirmed: PENDING",
                              "debited; notifyPayment staged", "wait"))
    status = payment["status"]
    if status in _FINAL_TONE:
        final_events = [e["created_at"] for e in events
                        if e["type"] == f"payment.{status.lower()}"]
        detail = payment["decline_code"] or payment["kaspi_result_code"] or ""
        moments.append(Moment(final_events[-1] if final_events else payment["updated_at"],
                              f"Status {status}", detail, _FINAL_TONE[status]))
    return moments


async def _ledger_moments(conn: Conn, transfers: list[tuple[str, str]]) -> list[Moment]:
    """The customer's side of each transfer (kind, reference), with the balance after."""
    rows = await conn.fetch(
        """SELECT t.kind, t.reference, t.created_at, e.amount_tiyn, e.balance_after_tiyn
             FROM transfers t
             JOIN entries e ON e.transfer_id = t.id
             JOIN accounts a ON a.id = e.account_id AND a.kind = 'customer'
            WHERE (t.kind, t.reference) IN (SELECT * FROM unnest($1::text[], $2::text[]))
            ORDER BY t.id""",
        [k for k, _ in transfers], [r for _, r in transfers])
    return [Moment(r["created_at"], f"Ledger: {accounts.STATEMENT_TYPES[r['kind']][0]}",
                   r["reference"], "info", r["amount_tiyn"], r["balance_after_tiyn"])
            for r in rows]


def _refund_moment(refund: asyncpg.Record) -> Moment:
    ok = refund["status"] == "SUCCESS"
    return Moment(refund["created_at"], f"Refund {refund['refund_id']}: {refund['status']}",
                  f"{refund['result_code']}: {refund['result_message']}",
                  "ok" if ok else "bad", link=refund["link_receipt"] or "")


async def _reconciliation_moments(conn: Conn, kaspi_ids: list[str],
                                  our_ids: list[str]) -> list[Moment]:
    matched = await conn.fetch(
        """SELECT m.kind, m.op_type, m.kaspi_id, r.id AS run_id, r.period_start, r.file_name,
                  r.created_at
             FROM reconciliation_matches m JOIN reconciliation_runs r ON r.id = m.run_id
            WHERE m.kaspi_id = ANY($1::text[])""", kaspi_ids)
    found = await conn.fetch(
        """SELECT * FROM reconciliation_discrepancies
            WHERE kaspi_id = ANY($1::text[]) OR our_id = ANY($2::text[]) ORDER BY id""",
        kaspi_ids, our_ids)
    moments = [Moment(m["created_at"], f"Reconciled: matched by the {m['kind']} registry",
                      f"{m['op_type']} {m['kaspi_id']}, period {m['period_start']}, run "
                      f"{m['run_id']} ({m['file_name']})", "ok") for m in matched]
    for d in found:
        state = (f"acknowledged by {d['resolved_by']}: {d['resolution']}" if d["resolved_by"]
                 else "resolved" if d["resolved"] else "open")
        moments.append(Moment(d["created_at"], f"Reconciliation discrepancy {d['id']}: "
                              f"{d['kind']}", f"{d['message']} ({state})",
                              "info" if d["resolved"] else "bad"))
    return moments


@dataclass(frozen=True)
class LimitUse:
    kind: str
    used_tiyn: int | None  # None: not a turnover (the per-payment limit, the cap)
    limit_tiyn: int | None  # None: no limit configured


@dataclass
class CustomerView:
    account: asyncpg.Record
    limits: list[LimitUse]
    statement: list[accounts.StatementLine]
    payments: list[asyncpg.Record]
    topups: list[asyncpg.Record]


async def customer(conn: Conn, customer_id: str, limits: Limits, *,
                   statement_before: int | None, statement_rows: int) -> CustomerView | None:
    account = await conn.fetchrow("SELECT * FROM accounts WHERE customer_id = $1",
                                  customer_id)
    if account is None:
        return None
    level = Level(account["identification_level"])
    # What the debit checks: the account's running totals (sql/functions/accounts.sql).
    used = await conn.fetchrow(
        "SELECT (paid_in_windows(a, now())).* FROM accounts a WHERE customer_id = $1",
        customer_id)
    assert used is not None
    uses = [LimitUse("payment", None, limits.tiyn(level, "payment")),
            LimitUse("daily", used["day_tiyn"], limits.tiyn(level, "daily")),
            LimitUse("monthly", used["month_tiyn"], limits.tiyn(level, "monthly")),
            LimitUse(BALANCE, account["balance_tiyn"], limits.tiyn(level, BALANCE))]
    statement = await accounts.statement_newest(conn, customer_id, statement_before,
                                                statement_rows)
    payments = list(await conn.fetch(
        """SELECT * FROM payments WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2""",
        customer_id, RECENT))
    topups = list(await conn.fetch(
        """SELECT * FROM topups WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2""",
        customer_id, RECENT))
    return CustomerView(account, uses, statement, payments, topups)


@dataclass
class TopupLife:
    topup: asyncpg.Record
    refunds: list[asyncpg.Record]
    moments: list[Moment]


async def topup_life(conn: Conn, topup_id: str) -> TopupLife | None:
    topup = await conn.fetchrow("SELECT * FROM topups WHERE topup_id = $1", topup_id)
    if topup is None:
        return None
    refunds = list(await conn.fetch(
        "SELECT * FROM topup_refunds WHERE topup_id = $1 ORDER BY created_at", topup_id))
    moments = [Moment(topup["created_at"], "Created: CREATED",
                      f"{topup['provider']}, order {topup['provider_order_id'] or '-'}")]
    if topup["status"] != "CREATED":
        moments.append(Moment(topup["credited_at"] or topup["updated_at"],
                              f"Status {topup['status']}", topup["failure_reason"] or "",
                              "ok" if topup["status"] == "CREDITED" else "bad"))
    refund_ids = [r["refund_id"] for r in refunds]
    moments += await _ledger_moments(
        conn, [("topup", topup_id)] + [(kind, r) for r in refund_ids
                                       for kind in ("topup_refund", "topup_refund_return")])
    moments += [Moment(r["created_at"], f"Refund to the card {r['refund_id']}: {r['status']}",
                       r["acquirer_reason"] or r["last_error"] or "",
                       {"COMPLETED": "ok", "REFUSED": "bad"}.get(r["status"], "wait"))
                for r in refunds]
    moments += _event_moments(await _events(conn, "topup_id", topup_id))
    moments.sort(key=lambda m: m.at)
    return TopupLife(topup, refunds, moments)

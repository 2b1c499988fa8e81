"""A stateful hypothesis machine against real PostgreSQL (pgledger's way): random
sequences of deposits, debits, Kaspi answers and refunds, through the same SQL steps
the server uses; after every step the books balance and every customer's balance is
what a plain model of the rules says."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    invariant,
    rule,
    run_state_machine_as_test,
)

from mpp_server import db
from mpp_server.domain import deposits, ledger, payments
from mpp_server.domain.limits import parse_limits
from tests.support.machine import DatabaseMachine

CUSTOMERS = ("770000000101", "770000000102", "770000000103")
MERCHANT = {"merchantId": "1", "merchantName": "M", "merchantMCC": "5812"}
amounts = st.integers(min_value=1, max_value=50_000)


class LedgerMachine(DatabaseMachine):
    paid = Bundle("paid")

    def __init__(self) -> None:
        super().__init__()
        self.prefix = uuid.uuid4().hex[:8]
        self.balances = {c: self._balance(c) for c in CUSTOMERS}
        self.payments: dict[str, tuple[str, int, str]] = {}  # id -> customer, amount, status
        self.refunded: dict[str, int] = {}
        self.refund_answers: dict[str, tuple[str, str, int, str]] = {}

    def _balance(self, customer: str) -> int:
        found = self.run(self.conn.fetchval(
            "SELECT balance_tiyn FROM accounts WHERE customer_id = $1", customer))
        return int(found or 0)

    @rule(customer=st.sampled_from(CUSTOMERS), amount=amounts)
    def deposit(self, customer: str, amount: int) -> None:
        deposit_id = f"{self.prefix}-d{uuid.uuid4().hex[:10]}"

        async def go() -> None:
            # The server's pool (its jsonb codec: deposits pass the limits as jsonb).
            pool = await db.create_pool(self.dsn, min_size=1, max_size=1)
            try:
                await deposits.deposit(pool, deposit_id, customer, amount,
                                       parse_limits("{}", 1))
            finally:
                await pool.close()

        self.run(go())
        self.balances[customer] += amount

    @rule(target=paid, customer=st.sampled_from(CUSTOMERS), amount=amounts)
    def debit(self, customer: str, amount: int) -> str:
        payment_id = f"{self.prefix}-p{uuid.uuid4().hex[:10]}"
        self.run(self.conn.execute(
            "INSERT INTO payments (payment_id, customer_id, qr_code_type, status, amount_tiyn, "
            "merchant) VALUES ($1, $2, 'Dynamic', 'SCANNED', $3, $4)", payment_id, customer,
            amount, MERCHANT))
        outcome, _ = self.run(payments.confirm_statement(self.conn, payment_id, customer, None,
                                                         None, 0, "{}", 0))
        if self.balances[customer] >= amount:
            assert outcome == "DEBITED"
            self.balances[customer] -= amount
            self.payments[payment_id] = (customer, amount, "PENDING")
        else:
            assert outcome == "INSUFFICIENT_FUNDS"
            self.payments[payment_id] = (customer, amount, "DECLINED")
        return payment_id

    @rule(payment_id=paid, success=st.booleans())
    def kaspi_answers(self, payment_id: str, success: bool) -> None:
        # As the server does: the staged code is read, then the answer applied once
        # (sql/007); an answer for a row already applied (a second sender's) changes
        # nothing.
        async def go() -> str:
            staged = await self.conn.fetchval(
                "SELECT result_code FROM notify_outbox WHERE payment_id = $1", payment_id)
            outcome: str = await self.conn.fetchval(
                "SELECT outcome FROM apply_notify_answer_once($1, $2, $3, 'm', 'https://r', $4)",
                payment_id, staged or "SUCCESS", "SUCCESS" if success else "RISK_REJECT",
                ledger.shard_for(payment_id))
            return outcome

        outcome = self.run(go())
        customer, amount, status = self.payments[payment_id]
        if outcome == "ALREADY_APPLIED":
            assert status != "PENDING" or payment_id in self.refunded
            return
        if status == "PENDING":
            if success:
                self.payments[payment_id] = (customer, amount, "COMPLETED")
            else:
                assert outcome == "DECLINED"
                self.balances[customer] += amount
                self.payments[payment_id] = (customer, amount, "DECLINED")

    @rule(payment_id=paid, amount=amounts, repeat=st.booleans())
    def refund(self, payment_id: str, amount: int, repeat: bool) -> None:
        customer, paid_amount, status = self.payments[payment_id]
        previous = [r for r, a in self.refund_answers.items() if a[1] == payment_id]
        if repeat and previous:
            refund_id = previous[0]
            _, _, amount, _ = self.refund_answers[refund_id]
        else:
            refund_id = f"{self.prefix}-r{uuid.uuid4().hex[:10]}"
        code = self.run(self.conn.fetchval(
            "SELECT code FROM refund_apply($1, $2, $3, $4, 'https://r', $5)", refund_id,
            payment_id, customer, amount, ledger.shard_for(payment_id)))
        if refund_id in self.refund_answers:
            assert code == self.refund_answers[refund_id][3], "a repeat answers the same"
            return
        room = paid_amount - self.refunded.get(payment_id, 0)
        allowed = status in ("PENDING", "COMPLETED") and amount <= room
        assert (code == "SUCCESS") == allowed, (code, status, amount, room)
        if allowed:
            self.balances[customer] += amount
            self.refunded[payment_id] = self.refunded.get(payment_id, 0) + amount
            self.payments[payment_id] = (customer, paid_amount, "COMPLETED")
        self.refund_answers[refund_id] = (customer, payment_id, amount, code)

    @invariant()
    def books_balance(self) -> None:
        report = self.run(ledger.check_invariants(self.conn))
        assert report.ok, report
        for customer in CUSTOMERS:
            assert self._balance(customer) == self.balances[customer]


def test_ledger_state_machine(isolated_db: str) -> None:
    # A database of its own: the machine leaves PENDING payments whose notify is due at
    # once; in the session's database the stack's notify worker declined them during the
    # next tests (returns posted, outbox rows gone, simulator faults taken).
    LedgerMachine.dsn = isolated_db
    run_state_machine_as_test(LedgerMachine, settings=settings(
        max_examples=25, stateful_step_count=15, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow]))

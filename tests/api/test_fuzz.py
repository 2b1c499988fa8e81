"""schemathesis against both listeners of the running server, from their own /openapi.json:
no 5xx, every answer as described (status, content type, schema), every 4xx with the
contract's error body, and the books untouched except by requests that were answered.

The server runs in the session's event loop, so the synchronous schemathesis calls run
in a worker thread (`asyncio.to_thread`) while the loop keeps serving them. Generation
is derandomized: the same cases every run. FUZZ_EXAMPLES scales the run (default 200
cases per operation and mode).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from mpp_server.domain import ledger
from mpp_server.money import parse_amount
from tests.support.stack import Stack

AnyCase = Case[Any]
AnyOperation = APIOperation[Any, Any, Any, Any]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


@dataclass
class FuzzReport:
    started_at: datetime
    failures: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    statuses: Counter[int] = field(default_factory=Counter)
    # (depositId, customerId, amount) of every deposit answered 201
    deposits: set[tuple[str, str, str]] = field(default_factory=set)

    def fail(self, case: AnyCase, why: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(f"{case.operation.label}: {why}\n  {case.as_curl_command()}")


def _described(document: dict[str, Any], case: AnyCase, status: int) -> dict[str, Any]:
    op = document["paths"][case.operation.path][case.method.lower()]
    answer: dict[str, Any] = op["responses"].get(str(status), {})
    return answer


def _contract_checks(document: dict[str, Any], case: AnyCase, response: Response,
                     refused: int | None, report: FuzzReport) -> None:
    """What the generic checks cannot know: our error bodies and codes, the token rule
    (`refused`: the status every secured call must get with this run's token)."""
    status = response.status_code
    secured = case.operation.path.startswith("/v1/")
    if secured and refused is not None and status != refused:
        report.fail(case, f"answered {status} where the token must get {refused}")
    if status < 400:
        if case.operation.path.endswith("/deposits") and status == 201:
            body: dict[str, Any] = case.body  # type: ignore[assignment]  # a deposit's JSON
            customer = unquote(case.path_parameters["customerId"])  # as sent: encoded
            report.deposits.add((body["depositId"], customer, str(body["amount"])))
        return
    body = response.json()
    if case.operation.path == "/refund":
        if body["result"]["resultCode"] != "PARAM_ILLEGAL":
            report.fail(case, f"{status} with {body}")
        return
    codes = _described(document, case, status).get("x-error-codes")
    if codes is not None and body["error"]["code"] not in codes:
        report.fail(case, f"{status} {body['error']['code']} is not one of {codes}")


def _mutates_the_token(case: AnyCase) -> bool:
    """A negative case whose violation is in the Authorization header."""
    data = getattr(getattr(case.meta, "phase", None), "data", None)
    return getattr(data, "parameter", None) == "Authorization"


def _deposit_only(document: dict[str, Any], operation: AnyOperation) -> bool:
    """An operation only DEPOSIT_API_TOKENS may call (its security scheme says so)."""
    op = document["paths"][operation.path][operation.method.lower()]
    return bool(op.get("security") == [{"depositAuth": []}])


def fuzz(name: str, document: dict[str, Any], base_url: str, headers: dict[str, str], *,
         examples: int, modes: tuple[GenerationMode, ...], report: FuzzReport,
         deposit_only: bool | None = None, refused: int | None = None) -> None:
    """Run `examples` generated cases per operation and mode; collect, do not raise.
    `deposit_only`: True for only the deposit-token operations, False for only the
    others, None for all."""
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if deposit_only is not None and _deposit_only(document, operation) != deposit_only:
            continue
        for mode in modes:
            if mode.is_negative and not (operation.body or operation.path_parameters
                                         or operation.query or operation.headers):
                continue  # nothing to get wrong
            _fuzz_operation(f"{name}: {operation.label} ({mode.value})", operation, mode,
                            document, base_url, headers, session, examples, report,
                            refused=refused)


def _fuzz_operation(key: str, operation: AnyOperation, mode: GenerationMode,
                    document: dict[str, Any], base_url: str, headers: dict[str, str],
                    session: requests.Session, examples: int, report: FuzzReport, *,
                    refused: int | None) -> None:
    @hypothesis.settings(max_examples=examples, derandomize=True, database=None,
                         deadline=None, phases=[Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: AnyCase) -> None:
        if _mutates_the_token(case):
            # The run sends its own Authorization header over schemathesis' mutated one,
            # so such a case would be a valid call judged as a violating one; the token
            # rule has runs of its own (no token, a wrong token, the other kind).
            return
        report.calls[key] += 1
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as exc:
            report.fail(case, "; ".join(f.title for f in exc.exceptions))
            return
        _contract_checks(document, case, response, refused, report)

    started = time.monotonic()
    run()
    report.seconds[key] += time.monotonic() - started


@dataclass(frozen=True)
class Books:
    last_transfer_id: int
    inbound_requests: int
    balances: dict[str, int]


async def _books(stack: Stack) -> Books:
    async with stack.pool.acquire() as conn:
        last = await conn.fetchval("SELECT coalesce(max(id), 0) FROM transfers")
        inbound = await conn.fetchval("SELECT count(*) FROM inbound_requests")
        rows = await conn.fetch(
            "SELECT customer_id, balance_tiyn FROM accounts WHERE kind = 'customer'")
    return Books(last, inbound, {r["customer_id"]: r["balance_tiyn"] for r in rows})


async def _assert_only_answered_deposits_moved_money(stack: Stack, before: Books,
                                                     report: FuzzReport) -> None:
    """Every transfer made during the run is a deposit the fuzzer was answered 201 for,
    or belongs to a payment or refund that existed before (the notify worker finishing an
    earlier test's payment); every balance moved by exactly its new transfers."""
    async with stack.pool.acquire() as conn:
        assert (await ledger.check_invariants(conn)).ok
        deposits = await conn.fetch(
            """SELECT t.reference, a.customer_id, t.amount_tiyn FROM transfers t
               JOIN accounts a ON a.id = t.credit_account_id
               WHERE t.id > $1 AND t.kind = 'deposit'""", before.last_transfer_id)
        strangers = await conn.fetch(
            """SELECT kind, reference FROM transfers WHERE id > $1 AND kind <> 'deposit'
                 AND reference NOT IN (SELECT payment_id FROM payments WHERE created_at < $2
                                       UNION SELECT refund_id FROM refunds
                                       WHERE created_at < $2)""",
            before.last_transfer_id, report.started_at)
        moved = await conn.fetch(
            """SELECT a.customer_id, a.balance_tiyn, sum(e.amount_tiyn) AS moved
               FROM entries e JOIN accounts a ON a.id = e.account_id
               WHERE e.transfer_id > $1 AND a.kind = 'customer'
               GROUP BY a.customer_id, a.balance_tiyn""", before.last_transfer_id)
    answered = {(d, c, parse_amount(a)) for d, c, a in report.deposits}
    assert {(r["reference"], r["customer_id"], r["amount_tiyn"]) for r in deposits} == answered
    assert not strangers, strangers
    for row in moved:
        assert row["balance_tiyn"] == before.balances.get(row["customer_id"], 0) + row["moved"]


async def _served(stack: Stack, url: str) -> dict[str, Any]:
    async with stack.http.get(url + "/openapi.json") as resp:
        assert resp.status == 200
        document: dict[str, Any] = await resp.json()
        return document


@pytest.mark.slow
async def test_fuzzing_both_listeners_finds_no_server_error(stack: Stack) -> None:
    wallet_doc = await _served(stack, stack.wallet_url)
    kaspi_doc = await _served(stack, stack.kaspi_url)
    before = await _books(stack)
    report = FuzzReport(started_at=await stack.pool.fetchval("SELECT now()"))
    both = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    token = {"Authorization": f"Bearer {stack.token}"}
    deposit_token = {"Authorization": f"Bearer {stack.deposit_token}"}

    def run_all() -> None:
        fuzz("wallet", wallet_doc, stack.wallet_url, token, examples=EXAMPLES, modes=both,
             report=report, deposit_only=False)
        fuzz("deposit", wallet_doc, stack.wallet_url, deposit_token, examples=EXAMPLES,
             modes=both, report=report, deposit_only=True)
        # The other token list on each: FORBIDDEN, never a 2xx.
        fuzz("wallet token on deposits", wallet_doc, stack.wallet_url, token,
             examples=max(EXAMPLES // 6, 10), modes=(GenerationMode.POSITIVE,),
             report=report, deposit_only=True, refused=403)
        fuzz("kaspi", kaspi_doc, stack.kaspi_url, {}, examples=EXAMPLES, modes=both,
             report=report)
        for name, bad in (("no token", {}), ("wrong token", {"Authorization": "Bearer x"})):
            fuzz(name, wallet_doc, stack.wallet_url, bad, examples=max(EXAMPLES // 6, 10),
                 modes=(GenerationMode.POSITIVE,), report=report, refused=401)

    started = time.monotonic()
    await asyncio.to_thread(run_all)
    elapsed = time.monotonic() - started
    print(f"\nfuzzing: {sum(report.calls.values())} calls in {elapsed:.1f} s; "
          f"statuses {dict(sorted(report.statuses.items()))}")
    for name, count in sorted(report.calls.items()):
        print(f"  {count:5d} {report.seconds[name]:5.1f} s  {name}")
    assert not report.failures, "\n".join(report.failures)
    assert not [s for s in report.statuses if s >= 500]
    await _assert_only_answered_deposits_moved_money(stack, before, report)
    # Every exchange on the Kaspi-facing listener is kept (regulation: log every callback).
    kaspi_calls = sum(n for name, n in report.calls.items() if name.startswith("kaspi:"))
    assert (await _books(stack)).inbound_requests - before.inbound_requests == kaspi_calls

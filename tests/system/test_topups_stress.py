"""Top-ups under random interleavings (issue 22): creates (repeated, concurrent), the
customer paying, declining, not paying, or paying after our session was over; callbacks
none, late, repeated and forged; status calls timing out or failing; refunds to the card
whose answers are lost or come late; and two server processes SIGKILLed and restarted
at random throughout. When it is over, for every top-up the wallet holds exactly what the
acquirer does: credited once if and only if the card was charged, and the refunds
completed adding up to what the acquirer refunded, never more, never less.

The scenario is seeded (TOPUP_STRESS_SEED, printed on failure) and runs over real
PostgreSQL, real server processes and the simulator's fake acquirers over HTTP."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from mpp_server.devtools.launcher import Listeners, Processes, free_ports
from mpp_server.domain import ledger
from mpp_server.money import format_amount, parse_amount
from tests.support.helpers import new_customer, sim
from tests.support.processes import AUTH
from tests.support.stack import Stack, server_env
from tests.support.topups import PROVIDERS, acquirer_fault, callback_of, until

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("TOPUP_STRESS_SEED") or 20_250_314)
TOPUPS = 60
AT_ONCE = 5
QUIET_S = 120.0
MIN_KILLS = 4
CALL_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass
class Fleet:
    """Two servers on one database; the test's calls go to whichever is up, and a
    killer SIGKILLs one at random and starts it again."""

    envs: list[dict[str, str]]
    processes: Processes
    http: aiohttp.ClientSession
    kills: int = 0

    def start(self, i: int) -> None:
        self.processes.start_server(f"server{i}", self.envs[i])

    def wallet_url(self, i: int) -> str:
        return "http://" + self.envs[i]["WALLET_LISTEN"]

    async def ready(self, i: int) -> None:
        await asyncio.to_thread(self.processes.wait_http, f"server{i}",
                                self.wallet_url(i) + "/readyz", 60)

    async def call(self, rng: random.Random, method: str, path: str,
                   body: Any = None) -> tuple[int, Any]:
        """The wallet API of a live server; a refused connection or a 503 (the database
        of a dying server, an acquirer not answering) is repeated, as a client would."""
        for _ in range(60):
            url = self.wallet_url(rng.randrange(len(self.envs)))
            try:
                async with self.http.request(method, url + path, json=body, headers=AUTH,
                                             timeout=CALL_TIMEOUT) as resp:
                    answer = await resp.json(content_type=None)
                    if resp.status != 503:
                        return resp.status, answer
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"{method} {path}: no live server answered")

    async def killer(self, rng: random.Random, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            i = rng.randrange(len(self.envs))
            self.processes.kill(f"server{i}")
            self.kills += 1
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            self.start(i)
            await self.ready(i)


@dataclass
class Plan:
    topup: dict[str, Any]
    pay: str  # success, decline, none, late


async def _status_of(db: asyncpg.Pool, topup_id: str) -> str:
    return str(await db.fetchval("SELECT status FROM topups WHERE topup_id = $1", topup_id))


async def one_topup(stack: Stack, fleet: Fleet, db: asyncpg.Pool, rng: random.Random,
                    customers: list[str]) -> Plan:
    provider = rng.choice(PROVIDERS)
    amount = rng.choice(["20.00", "150.50", "999.00", "2500.00"])
    if provider == "kaspi-ecom":
        amount = amount.split(".")[0] + ".00"
    body = {"topupId": "st-" + uuid.uuid4().hex[:16], "customerId": rng.choice(customers),
            "provider": provider, "amount": amount}
    answers = await asyncio.gather(*(fleet.call(rng, "POST", "/v1/topups", body)
                                     for _ in range(rng.choice([1, 1, 2, 3]))))
    assert all(status in (200, 201) for status, _ in answers), answers
    topup = dict(answers[0][1])
    for _ in range(50):  # a repeat answered while another request placed the order
        if topup.get("paymentUrl") or topup["status"] != "CREATED":
            break
        _, topup = await fleet.call(rng, "POST", "/v1/topups", body)
    plan = Plan(topup, rng.choice(["success", "success", "success", "decline", "none",
                                   "late"]))
    if rng.random() < 0.3:  # a forger, or a callback before anything happened
        path, kwargs = callback_of(topup)
        for env in fleet.envs:
            try:
                async with fleet.http.post(env["ACQUIRING_PUBLIC_URL"] + path,
                                           **kwargs) as resp:
                    await resp.read()
            except aiohttp.ClientError:
                pass
    if rng.random() < 0.3:
        await acquirer_fault(stack, provider, "status",
                             rng.choice(["timeout", "http500"]), rng.randint(1, 3), 1500)
    if plan.pay == "none":
        return plan
    if plan.pay == "late":
        await sim(stack, "POST", "/sim/acquiring/open", {"paymentUrl": topup["paymentUrl"]})
        await db.execute("UPDATE topups SET expires_at = now(), next_check_at = now() "
                         "WHERE topup_id = $1", topup["topupId"])

        async def over() -> bool:
            return await _status_of(db, topup["topupId"]) != "CREATED"

        await until(over, f"{topup['topupId']} to end", QUIET_S)
    play = {"paymentUrl": topup["paymentUrl"],
            "outcome": "decline" if plan.pay == "decline" else "success",
            "callback": rng.choice(["send", "skip", "twice"])}
    for _ in range(50):  # Halyk's page is ours: its server may be down a moment
        status, paid = await sim(stack, "POST", "/sim/acquiring/pay", play)
        if status == 200:
            break
        await asyncio.sleep(0.3)
    assert status == 200, paid
    if plan.pay in ("success", "late") and provider != "kaspi-ecom" and rng.random() < 0.7:
        await refunds(stack, fleet, db, rng, topup, parse_amount(amount))
    return plan


async def refunds(stack: Stack, fleet: Fleet, db: asyncpg.Pool, rng: random.Random,
                  topup: dict[str, Any], amount_tiyn: int) -> None:
    async def credited() -> bool:
        return await _status_of(db, topup["topupId"]) == "CREDITED"

    await until(credited, f"{topup['topupId']} to be credited", QUIET_S)
    left = amount_tiyn
    for _ in range(rng.randint(1, 2)):
        if left < 1000:
            return
        part = left if rng.random() < 0.5 else rng.randint(1000, left)
        if rng.random() < 0.5:
            await acquirer_fault(stack, topup["provider"], "refund",
                                 rng.choice(["late_answer", "timeout", "http500"]), 1, 2500)
        status, answer = await fleet.call(
            rng, "POST", f"/v1/topups/{topup['topupId']}/refunds",
            {"refundId": "sr-" + uuid.uuid4().hex[:12], "amount": format_amount(part)})
        assert status in (200, 201), answer
        left -= part


async def test_random_interleavings_leave_the_wallet_holding_what_the_acquirer_holds(
        stack: Stack, isolated_db: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    ports = iter(free_ports(2 * Listeners.COUNT))  # all distinct (SO_REUSEPORT)
    envs = [{**server_env(isolated_db, stack.sim_url, Listeners.on(ports)),
             "TOPUP_LATE_WATCH_S": "60"} for _ in range(2)]
    db = await asyncpg.create_pool(isolated_db, min_size=1, max_size=4)
    await sim(stack, "DELETE", "/sim/acquiring/faults")
    async with aiohttp.ClientSession() as http:
        fleet = Fleet(envs, Processes(tmp_path), http)
        stop = asyncio.Event()
        killer: asyncio.Task[None] = asyncio.create_task(asyncio.sleep(0))
        try:
            for i in range(len(envs)):
                fleet.start(i)
            for i in range(len(envs)):
                await fleet.ready(i)
            killer = asyncio.create_task(fleet.killer(random.Random(rng.random()), stop))
            customers = [new_customer() for _ in range(6)]
            slots = asyncio.Semaphore(AT_ONCE)

            async def bounded() -> Plan:
                async with slots:
                    return await one_topup(stack, fleet, db, random.Random(rng.random()),
                                           customers)

            plans = await asyncio.gather(*(bounded() for _ in range(TOPUPS)))

            async def killed_enough() -> bool:
                return fleet.kills >= MIN_KILLS

            await until(killed_enough, f"{MIN_KILLS} kills", QUIET_S)
            stop.set()
            await killer
            await sim(stack, "DELETE", "/sim/acquiring/faults")
            await settled(stack, db, plans)
            await books_match(stack, db, plans)
        except BaseException as exc:
            exc.add_note(f"TOPUP_STRESS_SEED={SEED}, {fleet.kills} kills; logs in {tmp_path}")
            raise
        finally:
            stop.set()
            killer.cancel()
            await asyncio.gather(killer, return_exceptions=True)
            fleet.processes.stop()
            await db.close()


async def sim_order(stack: Stack, topup: dict[str, Any]) -> dict[str, Any]:
    status, order = await sim(stack, "GET", f"/sim/acquiring/orders/{topup['provider']}/"
                                            f"{topup['providerOrderId']}")
    assert status == 200, order
    return dict(order)


_EXPECTED = {"PAID": {"CREDITED"}, "DECLINED": {"FAILED"}, "NEW": {"CREATED", "EXPIRED"}}


async def settled(stack: Stack, db: asyncpg.Pool, plans: list[Plan]) -> None:
    """Every top-up where the acquirer's order says, every refund answered."""
    async def quiet() -> bool:
        for plan in plans:
            order = await sim_order(stack, plan.topup)
            if await _status_of(db, plan.topup["topupId"]) not in _EXPECTED[order["status"]]:
                return False
        return not await db.fetchval(
            "SELECT count(*) FROM topup_refunds WHERE status IN ('PENDING', 'UNKNOWN')")

    await until(quiet, "every top-up and refund to settle", QUIET_S)


async def books_match(stack: Stack, db: asyncpg.Pool, plans: list[Plan]) -> None:
    balances: dict[str, int] = {}
    for plan in plans:
        topup_id, order = plan.topup["topupId"], await sim_order(stack, plan.topup)
        row = await db.fetchrow("SELECT * FROM topups WHERE topup_id = $1", topup_id)
        assert row is not None
        credits = await db.fetchval("SELECT count(*) FROM transfers WHERE kind = 'topup' "
                                    "AND reference = $1", topup_id)
        charged = order["status"] == "PAID"
        assert credits == (1 if charged else 0), (topup_id, order, dict(row))
        completed = await db.fetchval(
            "SELECT coalesce(sum(amount_tiyn), 0) FROM topup_refunds "
            "WHERE topup_id = $1 AND status = 'COMPLETED'", topup_id)
        at_acquirer = sum(r["amountTiyn"] for r in order["refunds"])
        ours = [dict(r) for r in await db.fetch(
            "SELECT * FROM topup_refunds WHERE topup_id = $1", topup_id)]
        assert completed == at_acquirer == row["refunded_tiyn"], (order, dict(row), ours)
        balances[row["customer_id"]] = balances.get(row["customer_id"], 0) + (
            row["amount_tiyn"] - completed if charged else 0)
    for customer, expected in balances.items():
        held = await db.fetchval("SELECT balance_tiyn FROM accounts WHERE customer_id = $1",
                                 customer)
        assert held == expected, (customer, held, expected)
    async with db.acquire() as conn:
        assert (await ledger.check_invariants(conn)).ok

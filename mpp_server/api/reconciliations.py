"""GET /v1/reconciliations and /v1/reconciliations/{id}: the runs of
`python -m mpp_server reconcile` (docs/reconciliation.md), for the operator's screens.

The same answer models are the CLI's `--json` report. Amounts are "1500.00" strings;
`expected` is what Kaspi's registry says, `actual` what our books say. A run's items
come in pages (`limit`, `after`: a run of a bad month can have hundreds of thousands).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, PlainSerializer

from mpp_server.api.middleware import check_query, json_response, path_param, query_int
from mpp_server.api.models import Money, Timestamp
from mpp_server.api.wallet import SERVICES
from mpp_server.errors import NotFound
from mpp_server.reconcile import store
from mpp_server.reconcile.matching import signed_money

LIST_MAX_LIMIT = 500
LIST_QUERY = frozenset({"limit", "before"})
ITEMS_DEFAULT_LIMIT = 500
ITEMS_MAX_LIMIT = 5000
DETAIL_QUERY = frozenset({"limit", "after"})

# A settlement figure can be negative (a day of more refunds than payments).
SignedMoney = Annotated[int, PlainSerializer(signed_money, return_type=str)]


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class FiguresOut(_Response):
    paymentsCount: int
    payments: Money
    refundsCount: int
    refunds: Money
    fees: Money | None = None  # Kaspi's only
    # Kaspi: payments − refunds − fees; ours: payments − refunds (the fee is Kaspi's).
    settlement: SignedMoney


class DiscrepancyOut(_Response):
    id: int
    kind: str
    kaspiId: str | None
    ourId: str | None
    row: int | None
    expected: str | None
    actual: str | None
    message: str
    resolved: bool
    resolvedAt: Timestamp | None
    resolution: str | None  # why: a later run's finding, or the acknowledgement's reason
    resolvedBy: str | None = None  # who acknowledged it (`reconcile ack`); None: a run
    sheet: str | None = None  # the registry's sheet of `row`
    customerId: str | None = None
    registryAt: Timestamp | None = None  # the row's date and time
    ourAt: Timestamp | None = None  # our completion: a payment's debit, a refund's answer


class ReconciliationOut(_Response):
    id: int
    kind: Literal["daily", "monthly"]
    period: str  # 2024-05-01 (daily) or 2024-05 (monthly)
    periodStart: date
    periodEnd: date  # exclusive
    fileName: str
    fileSha256: str
    status: Literal["matched", "discrepancies"]
    rows: int
    matched: int
    discrepancies: int
    openDiscrepancies: int
    kaspi: FiguresOut
    ours: FiguresOut
    # Kaspi's payments − refunds equal ours: the settlement differs by the fees only.
    settlementAgrees: bool
    createdAt: Timestamp
    items: list[DiscrepancyOut] | None = None
    # The next page of items: ?after=<this>; None when `items` ends the run's list.
    nextItemsAfter: int | None = None


class ReconciliationsOut(_Response):
    reconciliations: list[ReconciliationOut]


def run_out(run: asyncpg.Record, items: list[asyncpg.Record] | None = None,
            next_after: int | None = None) -> ReconciliationOut:
    kaspi_net = run["kaspi_payments_tiyn"] - run["kaspi_refunds_tiyn"]
    our_net = run["our_payments_tiyn"] - run["our_refunds_tiyn"]
    start: date = run["period_start"]
    return ReconciliationOut(
        id=run["id"], kind=run["kind"],
        period=start.isoformat() if run["kind"] == "daily" else start.isoformat()[:7],
        periodStart=start, periodEnd=run["period_end"], fileName=run["file_name"],
        fileSha256=run["file_sha256"], status=run["status"], rows=run["rows_count"],
        matched=run["matched_count"], discrepancies=run["discrepancy_count"],
        openDiscrepancies=run["open_count"],
        kaspi=FiguresOut(paymentsCount=run["kaspi_payments_count"],
                         payments=run["kaspi_payments_tiyn"],
                         refundsCount=run["kaspi_refunds_count"],
                         refunds=run["kaspi_refunds_tiyn"], fees=run["kaspi_fees_tiyn"],
                         settlement=kaspi_net - run["kaspi_fees_tiyn"]),
        ours=FiguresOut(paymentsCount=run["our_payments_count"],
                        payments=run["our_payments_tiyn"],
                        refundsCount=run["our_refunds_count"], refunds=run["our_refunds_tiyn"],
                        settlement=our_net),
        settlementAgrees=kaspi_net == our_net, createdAt=run["created_at"],
        items=None if items is None else [item_out(d) for d in items],
        nextItemsAfter=next_after)


def item_out(d: asyncpg.Record) -> DiscrepancyOut:
    return DiscrepancyOut(
        id=d["id"], kind=d["kind"], kaspiId=d["kaspi_id"], ourId=d["our_id"],
        row=d["row_number"], expected=d["expected"], actual=d["actual"],
        message=d["message"], resolved=d["resolved"], resolvedAt=d["resolved_at"],
        resolution=d["resolution"], resolvedBy=d["resolved_by"], sheet=d["sheet"],
        customerId=d["customer_id"], registryAt=d["registry_at"], ourAt=d["our_at"])


async def list_reconciliations(request: web.Request) -> web.Response:
    check_query(request, LIST_QUERY)
    limit = query_int(request, "limit", 50, 1, LIST_MAX_LIMIT)
    before = query_int(request, "before", None, 1, 2**63 - 1)
    assert limit is not None
    async with request.app[SERVICES].pool.acquire() as conn:
        runs = await store.list_runs(conn, limit, before)
    return json_response(ReconciliationsOut(reconciliations=[run_out(r) for r in runs]))


async def get_reconciliation(request: web.Request) -> web.Response:
    run_id = int(path_param(request, "run_id", r"^[0-9]{1,18}$"))
    check_query(request, DETAIL_QUERY)
    limit = query_int(request, "limit", ITEMS_DEFAULT_LIMIT, 1, ITEMS_MAX_LIMIT)
    after = query_int(request, "after", None, 0, 2**63 - 1)
    assert limit is not None
    async with request.app[SERVICES].pool.acquire() as conn:
        run = await store.get_run(conn, run_id)
        if run is None:
            raise NotFound(f"reconciliation {run_id} not found")
        items = await store.discrepancies(conn, run_id, limit + 1, after)
    more = len(items) > limit
    return json_response(run_out(run, items[:limit],
                                 items[limit - 1]["id"] if more else None))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/reconciliations", list_reconciliations)
    app.router.add_get("/v1/reconciliations/{run_id}", get_reconciliation)

"""A reconciliation run as JSON: the `reconcile --json` report and the answer of
`GET /v1/reconciliations/{id}` (the HTTP layer serves these models; they are the back
office's, so the CLI does not import the HTTP layer). Amounts are "1500.00" strings;
`expected` is what Kaspi's registry says, `actual` what our books say."""

from __future__ import annotations

from datetime import date
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from mpp_server.wire import Money, SignedMoney, Timestamp


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


# The statuses of a run as it reads now (sql/functions/reconciliation.sql).
ACKNOWLEDGED_WITH_DIFFERENCES = "acknowledged_with_differences"
RunStatus = Literal["matched", "discrepancies", "acknowledged_with_differences"]


class ReconciliationOut(_Response):
    id: int
    kind: Literal["daily", "monthly"]
    period: str  # 2024-05-01 (daily) or 2024-05 (monthly)
    periodStart: date
    periodEnd: date  # exclusive
    fileName: str
    fileSha256: str
    # As it reads now: discrepancies (some open), acknowledged_with_differences (none
    # open, but a person acknowledged some or the settlement differs: never a match),
    # matched (none open, none acknowledged).
    status: RunStatus
    rows: int
    matched: int
    discrepancies: int
    openDiscrepancies: int
    acknowledgedDiscrepancies: int
    kaspi: FiguresOut
    ours: FiguresOut
    # Kaspi's payments − refunds equal ours: the settlement differs by the fees only.
    settlementAgrees: bool
    settlementDifference: SignedMoney = Field(
        description="Kaspi's payments − refunds less ours (fees aside): \"0.00\" when they "
                    "agree, negative when ours are more")
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
        fileSha256=run["file_sha256"], status=run["status_now"], rows=run["rows_count"],
        matched=run["matched_count"], discrepancies=run["discrepancy_count"],
        openDiscrepancies=run["open_count"], acknowledgedDiscrepancies=run["acknowledged_count"],
        kaspi=FiguresOut(paymentsCount=run["kaspi_payments_count"],
                         payments=run["kaspi_payments_tiyn"],
                         refundsCount=run["kaspi_refunds_count"],
                         refunds=run["kaspi_refunds_tiyn"], fees=run["kaspi_fees_tiyn"],
                         settlement=kaspi_net - run["kaspi_fees_tiyn"]),
        ours=FiguresOut(paymentsCount=run["our_payments_count"],
                        payments=run["our_payments_tiyn"],
                        refundsCount=run["our_refunds_count"], refunds=run["our_refunds_tiyn"],
                        settlement=our_net),
        settlementAgrees=kaspi_net == our_net,
        settlementDifference=run["settlement_difference_tiyn"], createdAt=run["created_at"],
        items=None if items is None else [item_out(d) for d in items],
        nextItemsAfter=next_after)


def item_out(d: asyncpg.Record) -> DiscrepancyOut:
    return DiscrepancyOut(
        id=d["id"], kind=d["kind"], kaspiId=d["kaspi_id"], ourId=d["our_id"],
        row=d["row_number"], expected=d["expected"], actual=d["actual"],
        message=d["message"], resolved=d["resolved"], resolvedAt=d["resolved_at"],
        resolution=d["resolution"], resolvedBy=d["resolved_by"], sheet=d["sheet"],
        customerId=d["customer_id"], registryAt=d["registry_at"], ourAt=d["our_at"])

"""Kaspi's daily and monthly registries of confirmed payments and refunds (regulation §5).

One row per COMPLETED payment (at its completion time) and per refund the MPP answered
SUCCESS (at that time), in SIM_REGISTRY_TZ. Header in row 1. Amounts are numeric cells
written from Decimal (computed from tiyn, never float arithmetic); the fee is
SIM_FEE_PERCENT % of a payment, half-up to the tiyn; refunds carry a fee of 0.00.

Discrepancies (for reconciliation tests) are applied to every registry built while
they are set: they model Kaspi's file disagreeing with what really happened.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from mpp_server.devtools.simulator.model import Payment, Refund
from mpp_server.money import TIYN_PER_TENGE

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADERS = ("ID клиента", "ID операции MPP", "ID операции Kaspi", "ID платежа Kaspi",
           "Дата и время операции", "Тип операции", "Сумма", "Комиссия")
KIND_PAYMENT = "Оплата"
KIND_REFUND = "Возврат"
_DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
_AMOUNT_FORMAT = "0.00"


@dataclass(frozen=True, slots=True)
class SimRegistryRow:
    customer_id: str
    mpp_id: str | None
    kaspi_operation_id: str  # paymentId for a payment, refundId for a refund
    kaspi_payment_id: str
    at: datetime  # local, naive: Excel has no time zones
    kind: str
    amount_tiyn: int
    fee_tiyn: int


class DiscrepancyKind(StrEnum):
    DROP_ROW = "drop_row"
    CHANGE_AMOUNT = "change_amount"
    ADD_ROW = "add_row"
    DUPLICATE_ROW = "duplicate_row"


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: DiscrepancyKind
    kaspi_id: str | None = None  # the row's "ID операции Kaspi"
    amount_tiyn: int | None = None
    customer_id: str | None = None
    mpp_id: str | None = None


@dataclass(frozen=True, slots=True)
class SimRegistryPeriod:
    """[start, end) in local time; `label` names the file."""

    start: date
    end: date
    label: str

    @classmethod
    def day(cls, day: date) -> SimRegistryPeriod:
        return cls(day, day + timedelta(days=1), f"daily-{day.isoformat()}")

    @classmethod
    def month(cls, year: int, month: int) -> SimRegistryPeriod:
        start = date(year, month, 1)
        end = date(year + month // 12, month % 12 + 1, 1)
        return cls(start, end, f"monthly-{year:04d}-{month:02d}")


def fee_tiyn(amount_tiyn: int, percent: Decimal) -> int:
    return int((Decimal(amount_tiyn) * percent / 100).quantize(Decimal(1), ROUND_HALF_UP))


def _local(epoch_s: float, tz: timezone) -> datetime:
    # Whole seconds, like Kaspi's registry; Excel's serial dates round sub-seconds anyway.
    return datetime.fromtimestamp(int(epoch_s), UTC).astimezone(tz).replace(tzinfo=None)


def collect_rows(payments: Iterable[Payment], refunds: Iterable[Refund],
                 mpp_ids: dict[str, str | None], period: SimRegistryPeriod, tz: timezone,
                 fee_percent: Decimal) -> list[SimRegistryRow]:
    """The period's rows, oldest first. `mpp_ids` maps paymentId to mppPaymentId."""
    rows: list[SimRegistryRow] = []
    for payment in payments:
        assert payment.completed_at is not None and payment.amount_tiyn is not None
        assert payment.customer_id is not None
        at = _local(payment.completed_at, tz)
        if period.start <= at.date() < period.end:
            rows.append(SimRegistryRow(
                payment.customer_id, payment.mpp_payment_id, payment.payment_id,
                payment.payment_id, at, KIND_PAYMENT, payment.amount_tiyn,
                fee_tiyn(payment.amount_tiyn, fee_percent)))
    for refund in refunds:
        assert refund.succeeded_at is not None
        at = _local(refund.succeeded_at, tz)
        if period.start <= at.date() < period.end:
            rows.append(SimRegistryRow(
                refund.customer_id, mpp_ids.get(refund.payment_id), refund.refund_id,
                refund.payment_id, at, KIND_REFUND, refund.counted_tiyn, 0))
    rows.sort(key=lambda row: row.at)
    return rows


def apply_discrepancies(rows: list[SimRegistryRow], discrepancies: Iterable[Discrepancy],
                        period: SimRegistryPeriod, fee_percent: Decimal) -> list[SimRegistryRow]:
    for item in discrepancies:
        if item.kind is DiscrepancyKind.ADD_ROW:
            assert item.amount_tiyn is not None and item.kaspi_id is not None
            kaspi_id = item.kaspi_id
            rows.append(SimRegistryRow(
                item.customer_id or "000000000000", item.mpp_id, kaspi_id, kaspi_id,
                datetime.combine(period.start, time(12)), KIND_PAYMENT, item.amount_tiyn,
                fee_tiyn(item.amount_tiyn, fee_percent)))
            continue
        changed: list[SimRegistryRow] = []
        for row in rows:
            if row.kaspi_operation_id != item.kaspi_id:
                changed.append(row)
            elif item.kind is DiscrepancyKind.DUPLICATE_ROW:
                changed += [row, row]
            elif item.kind is DiscrepancyKind.CHANGE_AMOUNT:
                assert item.amount_tiyn is not None, "change_amount has an amount"
                fee = fee_tiyn(item.amount_tiyn, fee_percent) if row.fee_tiyn else 0
                changed.append(replace(row, amount_tiyn=item.amount_tiyn, fee_tiyn=fee))
            # DROP_ROW: the row is left out.
        rows = changed
    return rows


def _tenge(tiyn: int) -> Decimal:
    return (Decimal(tiyn) / TIYN_PER_TENGE).quantize(Decimal("0.01"))


def to_xlsx(rows: list[SimRegistryRow], period: SimRegistryPeriod) -> bytes:
    """The workbook's bytes. CPU-bound: call it off the event loop for big registries."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title="Реестр")
    bold = Font(bold=True)
    header = []
    for title in HEADERS:
        cell = WriteOnlyCell(sheet, value=title)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for row in rows:
        at = WriteOnlyCell(sheet, value=row.at)
        at.number_format = _DATETIME_FORMAT
        amount = WriteOnlyCell(sheet, value=_tenge(row.amount_tiyn))
        amount.number_format = _AMOUNT_FORMAT
        fee = WriteOnlyCell(sheet, value=_tenge(row.fee_tiyn))
        fee.number_format = _AMOUNT_FORMAT
        sheet.append([row.customer_id, row.mpp_id, row.kaspi_operation_id,
                      row.kaspi_payment_id, at, row.kind, amount, fee])
    workbook.properties.title = f"Kaspi Pay MPP registry {period.label}"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()

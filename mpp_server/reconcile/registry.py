"""Reading Kaspi's registry file (regulation §5): an .xlsx with one row per confirmed
payment and refund. Pure: bytes in, validated rows out, nothing written anywhere.

Columns are found by their header (Russian names, any order, case and surrounding
spaces ignored). Amounts become integer tiyn exactly: a numeric cell is a float in
openpyxl, so it goes through its shortest repr into Decimal and money.parse_amount,
which refuses more than two decimals; no arithmetic is ever done on a float.
Anything doubtful refuses the whole file (RegistryError): reconciling half a registry
would report the other half as missing.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from openpyxl import load_workbook
from openpyxl.utils.datetime import from_excel

from mpp_server.kaspi_client.models import KZ_TZ
from mpp_server.money import AmountError, parse_amount

MAX_ROWS = 2_000_000  # far above a month of a big wallet; a bound, not a forecast
HEADER_SEARCH_ROWS = 10  # Kaspi puts the header in row 1; tolerate a title above it
MAX_ERRORS_SHOWN = 10
MAX_ID_LENGTH = 64


class RegistryError(ValueError):
    """The file cannot be reconciled as it is; the message says why and where."""


class OpType(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


# Header name -> field. "ID операции Kaspi" is the paymentId of a payment row and the
# refundId of a refund row; "ID платежа Kaspi" is the paymentId on both.
COLUMNS = {
    "ID клиента": "customer_id",
    "ID операции MPP": "mpp_id",
    "ID операции Kaspi": "kaspi_id",
    "ID платежа Kaspi": "kaspi_payment_id",
    "Дата и время операции": "at",
    "Тип операции": "type",
    "Сумма": "amount",
    "Комиссия": "fee",
}
TYPE_NAMES = {"оплата": OpType.PAYMENT, "возврат": OpType.REFUND}
_DATE_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M")
_PERIOD_IN_NAME = re.compile(r"(daily|monthly)[-_ ](\d{4}-\d{2}(?:-\d{2})?)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Period:
    """A registry's period in local (UTC+5) dates: [start, end)."""

    kind: str  # "daily" | "monthly"
    start: date
    end: date

    @classmethod
    def day(cls, day: date) -> Period:
        return cls("daily", day, day + timedelta(days=1))

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        return cls("monthly", date(year, month, 1),
                   date(year + month // 12, month % 12 + 1, 1))

    @classmethod
    def parse(cls, kind: str, text: str) -> Period:
        """`daily` + YYYY-MM-DD or `monthly` + YYYY-MM; ValueError otherwise."""
        if kind == "daily" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return cls.day(date.fromisoformat(text))
        match = re.fullmatch(r"(\d{4})-(\d{2})", text)
        if kind == "monthly" and match and 1 <= int(match.group(2)) <= 12:
            return cls.month(int(match.group(1)), int(match.group(2)))
        raise ValueError(f"{kind} registry period must be "
                         f"{'YYYY-MM-DD' if kind == 'daily' else 'YYYY-MM'}, got {text!r}")

    @property
    def label(self) -> str:
        return self.start.isoformat() if self.kind == "daily" else self.start.isoformat()[:7]

    def utc_bounds(self) -> tuple[datetime, datetime]:
        def at(day: date) -> datetime:
            return datetime(day.year, day.month, day.day, tzinfo=KZ_TZ).astimezone(UTC)
        return at(self.start), at(self.end)


@dataclass(frozen=True, slots=True)
class Row:
    row_number: int  # as Excel shows it
    customer_id: str
    mpp_id: str | None
    kaspi_id: str
    kaspi_payment_id: str
    at: datetime  # local time, naive, as in the file
    type: OpType
    amount_tiyn: int
    fee_tiyn: int


@dataclass(frozen=True, slots=True)
class Registry:
    file_name: str
    sha256: str
    period: Period
    rows: list[Row]


def read_registry(content: bytes, file_name: str, period: Period | None = None) -> Registry:
    """Parse and validate a registry; `period` defaults to the one its name or title gives."""
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not xlsx
        raise RegistryError(f"{file_name}: not an xlsx workbook ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from exc
    try:
        if period is None:
            period = _period_from(file_name, str(workbook.properties.title or ""))
        rows = _read_rows(workbook, file_name, period)
    finally:
        workbook.close()
    return Registry(file_name, hashlib.sha256(content).hexdigest(), period, rows)


def _period_from(file_name: str, title: str) -> Period:
    for text in (file_name, title):
        match = _PERIOD_IN_NAME.search(text)
        if match:
            try:
                return Period.parse(match.group(1).lower(), match.group(2))
            except ValueError:
                continue
    raise RegistryError(f"{file_name}: cannot tell the registry's day or month from its name "
                        "or title; give --date YYYY-MM-DD or --month YYYY-MM")


def _norm(value: object) -> str:
    return " ".join(str(value).split()).casefold() if value is not None else ""


def _find_header(workbook: Any, file_name: str) -> tuple[Any, int, dict[str, int]]:
    """(sheet, header row number, field -> column index) of the first sheet that has
    every column."""
    wanted = {_norm(name): field for name, field in COLUMNS.items()}
    first_seen: list[str] | None = None
    for sheet in workbook.worksheets:
        for number, values in enumerate(sheet.iter_rows(max_row=HEADER_SEARCH_ROWS,
                                                        values_only=True), start=1):
            names = [_norm(v) for v in values]
            if first_seen is None and any(names):
                first_seen = [str(v).strip() for v in values if v is not None]
            found = [n for n in names if n in wanted]
            if set(found) == set(wanted):
                if len(found) != len(wanted):
                    raise RegistryError(f"{file_name}: sheet {sheet.title!r} row {number} "
                                        "has a column twice")
                return sheet, number, {wanted[n]: i for i, n in enumerate(names)
                                       if n in wanted}
    missing_from = {_norm(v) for v in first_seen or []}
    missing = [name for name in COLUMNS if _norm(name) not in missing_from]
    raise RegistryError(f"{file_name}: no sheet has the registry's columns; missing "
                        f"{', '.join(missing)} (found: {', '.join(first_seen or []) or 'nothing'})")


def _read_rows(workbook: Any, file_name: str, period: Period) -> list[Row]:
    sheet, header_row, columns = _find_header(workbook, file_name)
    rows: list[Row] = []
    errors: list[str] = []
    seen: dict[tuple[str, OpType], int] = {}
    for number, values in enumerate(sheet.iter_rows(min_row=header_row + 1, values_only=True),
                                    start=header_row + 1):
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue  # Excel keeps formatted but empty rows
        if len(rows) >= MAX_ROWS:
            raise RegistryError(f"{file_name}: more than {MAX_ROWS} rows")
        cells = {field: values[i] if i < len(values) else None for field, i in columns.items()}
        try:
            row = _row(number, cells, period)
        except RegistryError as exc:
            errors.append(str(exc))
            if len(errors) >= MAX_ERRORS_SHOWN:
                break
            continue
        key = (row.kaspi_id, row.type)
        if key in seen:
            errors.append(f"rows {seen[key]} and {number}: the same Kaspi operation "
                          f"{row.kaspi_id} ({row.type}) twice")
        else:
            seen[key] = number
        rows.append(row)
    if errors:
        raise RegistryError(f"{file_name}: " + "; ".join(errors[:MAX_ERRORS_SHOWN]))
    return rows


def _row(number: int, cells: dict[str, object], period: Period) -> Row:
    where = f"row {number}"
    type_text = _norm(cells["type"])
    if type_text not in TYPE_NAMES:
        raise RegistryError(f"{where}: Тип операции {cells['type']!r} is neither Оплата "
                            "nor Возврат")
    at = _datetime(cells["at"], where)
    if not period.start <= at.date() < period.end:
        raise RegistryError(f"{where}: date {at:%Y-%m-%d %H:%M:%S} is outside the registry's "
                            f"{'day' if period.kind == 'daily' else 'month'} {period.label}")
    amount = _tiyn(cells["amount"], f"{where}: Сумма")
    if amount == 0:
        raise RegistryError(f"{where}: Сумма must be positive")
    mpp_id = _text(cells["mpp_id"])
    return Row(number, _required(cells["customer_id"], f"{where}: ID клиента"),
               mpp_id or None, _required(cells["kaspi_id"], f"{where}: ID операции Kaspi"),
               _required(cells["kaspi_payment_id"], f"{where}: ID платежа Kaspi"),
               at, TYPE_NAMES[type_text], amount, _tiyn(cells["fee"], f"{where}: Комиссия"))


def _text(value: object) -> str:
    """An id cell as text: Excel may hold a numeric id as a number."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _required(value: object, where: str) -> str:
    text = _text(value)
    if not text:
        raise RegistryError(f"{where} is empty")
    if len(text) > MAX_ID_LENGTH:
        raise RegistryError(f"{where} is longer than {MAX_ID_LENGTH} characters")
    return text


def _tiyn(value: object, where: str) -> int:
    amount: object = value
    if isinstance(value, float):
        # repr is the shortest text that reads back as the same float: 1500.1 stays
        # "1500.1", and a cell holding 0.30000000000000004 is refused, not rounded.
        amount = Decimal(repr(value)) if math.isfinite(value) else None
    elif isinstance(value, str):
        amount = re.sub(r"[\s\u00a0]", "", value).replace(",", ".")
    try:
        return parse_amount(amount)
    except AmountError as exc:
        raise RegistryError(f"{where} {value!r} is not an amount: {exc}") from exc


def _datetime(value: object, where: str) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else (
            value.astimezone(KZ_TZ).replace(tzinfo=None))
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:  # a serial date in a cell without a date format
            converted = from_excel(value)
        except (ValueError, OverflowError):
            converted = None
        if isinstance(converted, datetime):
            return converted
    if isinstance(value, str):
        text = value.strip()
        try:
            return _datetime(datetime.fromisoformat(text), where)
        except ValueError:
            pass
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
    raise RegistryError(f"{where}: Дата и время операции {value!r} is not a date and time")

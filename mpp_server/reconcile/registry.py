"""Reading Kaspi's registry file (regulation §5): an .xlsx with one row per confirmed
payment and refund. Pure: bytes in, validated rows out, nothing written anywhere.

Every sheet that carries the columns is read (a large month spans sheets); columns are
found by their header (COLUMNS: Russian, Kazakh or English names and their aliases, any
order, case and surrounding spaces ignored); an unknown layout is refused naming the
columns found and the ones expected. Amounts become integer tiyn exactly: a numeric cell
is a float in openpyxl, so it goes through its shortest repr into Decimal and
money.parse_amount, which refuses more than two decimals; no arithmetic is ever done on
a float.
What is unambiguous is accepted (a blank fee, a totals row, a customer id Excel stored
as a number); anything doubtful refuses the whole file (RegistryError) naming the sheet
and row: reconciling half a registry would report the other half as missing.
The zip's declared sizes are checked before anything is unpacked, and sheets are
streamed (read_only): memory is bounded by MAX_ROWS and MAX_SHARED_STRINGS_BYTES.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import zipfile
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
CUSTOMER_ID_DIGITS = 12  # an IIN/BIN: Excel drops the leading zeros of a numeric cell
# What the zip may unpack to, by its own directory (checked before opening it; zipfile
# stops at the declared size, so a member cannot unpack to more than it declares).
# 2,000,000 rows are ~1 GiB of sheet XML; the shared strings are held in memory whole.
MAX_UNPACKED_BYTES = 1536 * 1024 * 1024
MAX_SHARED_STRINGS_BYTES = 384 * 1024 * 1024
MAX_ZIP_MEMBERS = 1000
# An Excel 97-2003 .xls (and a password-protected .xlsx) is an OLE2 compound file.
OLE2_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")


class RegistryError(ValueError):
    """The file cannot be reconciled as it is; the message says why and where."""


class OpType(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class Column:
    """A registry column: the field it fills and every header name it is known by."""

    field: str
    ru: str  # the name in messages
    kk: str
    en: str
    aliases: tuple[str, ...] = ()
    required: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        return (self.ru, self.kk, self.en, *self.aliases)

    @property
    def shown(self) -> str:
        """The column in a message: its Russian, Kazakh and English names."""
        names = " / ".join(dict.fromkeys((self.ru, self.kk, self.en)))
        return names if self.required else f"{names} (optional)"


# The one table of the registry's columns (regulation §5: its sample tables are images,
# so the names are our reading; docs/reconciliation.md). Headers are matched in any
# order, case and surrounding spaces ignored, each column by any of its names, so a file
# may mix languages; one column named twice (`Сумма` and `Сома`) is ambiguous and refused.
# The aliases are §5.1's own words for each column, in Kazakh and in Russian, and common
# English variants. "ID операции Kaspi" is the paymentId of a payment row and the refundId
# of a refund row (refunds are matched by it); "ID платежа Kaspi", the paymentId on both,
# may be absent: a refund row is then checked against its payment by ID операции MPP only.
COLUMNS: tuple[Column, ...] = (
    Column("customer_id", "ID клиента", "Клиенттің ID", "Customer ID",
           ("Идентификационный номер покупателя", "Сатып алушының сәйкестендіру нөмірі",
            "Client ID")),
    Column("mpp_id", "ID операции MPP", "MPP операциясының ID", "MPP operation ID",
           ("Идентификационный номер операции MPP", "Операцияның MPP сәйкестендіру нөмірі",
            "MPP transaction ID")),
    Column("kaspi_id", "ID операции Kaspi", "Kaspi операциясының ID", "Kaspi operation ID",
           ("Идентификационный номер операции в ПС", "Операцияның ТЖ-дағы сәйкестендіру нөмірі",
            "Kaspi transaction ID")),
    Column("kaspi_payment_id", "ID платежа Kaspi", "Kaspi төлемінің ID", "Kaspi payment ID",
           required=False),
    Column("at", "Дата и время операции", "Операцияның күні мен уақыты",
           "Operation date and time", ("Дата и время", "Күні мен уақыты", "Date and time")),
    Column("type", "Тип операции", "Операция түрі", "Operation type",
           ("Тип", "Түрі", "Type")),
    Column("amount", "Сумма", "Сома", "Amount", ("Сумма операции", "Сомасы")),
    Column("fee", "Комиссия", "Комиссия", "Fee",
           ("Размер комиссии", "Комиссия мөлшері", "Commission")),
)
COLUMN_OF = {column.field: column for column in COLUMNS}
# Тип операции's values, in every language.
TYPE_NAMES = {"оплата": OpType.PAYMENT, "возврат": OpType.REFUND,
              "төлем": OpType.PAYMENT, "қайтару": OpType.REFUND, "қайтарым": OpType.REFUND,
              "payment": OpType.PAYMENT, "refund": OpType.REFUND}
# A row naming itself a total (in any cell) and carrying no id is skipped.
TOTALS_WORDS = ("итого", "всего", "барлығы", "жиыны", "total")
# A fee cell read as no fee.
NO_FEE = frozenset({"", "-", "–", "—"})
_DATE_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M")
_PERIOD_IN_NAME = re.compile(r"(daily|monthly)[-_ ](\d{4}-\d{2}(?:-\d{2})?)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RegistryPeriod:
    """A registry's period in local (UTC+5) dates: [start, end)."""

    kind: str  # "daily" | "monthly"
    start: date
    end: date

    @classmethod
    def day(cls, day: date) -> RegistryPeriod:
        return cls("daily", day, day + timedelta(days=1))

    @classmethod
    def month(cls, year: int, month: int) -> RegistryPeriod:
        return cls("monthly", date(year, month, 1),
                   date(year + month // 12, month % 12 + 1, 1))

    @classmethod
    def parse(cls, kind: str, text: str) -> RegistryPeriod:
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
class RegistryRow:
    sheet: str
    row_number: int  # as Excel shows it
    customer_id: str
    mpp_id: str | None
    kaspi_id: str  # a payment row's paymentId, a refund row's refundId
    kaspi_payment_id: str | None  # None: the file has no ID платежа Kaspi column
    at: datetime  # local time, naive, as in the file
    type: OpType
    amount_tiyn: int
    fee_tiyn: int


@dataclass(frozen=True, slots=True)
class Registry:
    file_name: str
    sha256: str
    period: RegistryPeriod
    rows: list[RegistryRow]


def read_registry(content: bytes, file_name: str, period: RegistryPeriod | None = None) -> Registry:
    """Parse and validate a registry; `period` defaults to the one its name or title gives."""
    _check_container(content, file_name)
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not xlsx
        raise RegistryError(f"{file_name}: not an xlsx workbook ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from exc
    try:
        if period is None:
            period = _period_from(file_name, str(workbook.properties.title or ""))
        rows = _read_rows(workbook, file_name, period)
    except RegistryError:
        raise
    except Exception as exc:  # read_only parses as it goes: a damaged part shows up here
        raise RegistryError(f"{file_name}: not an xlsx workbook we can read "
                            f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    finally:
        workbook.close()
    return Registry(file_name, hashlib.sha256(content).hexdigest(), period, rows)


def _period_from(file_name: str, title: str) -> RegistryPeriod:
    for text in (file_name, title):
        match = _PERIOD_IN_NAME.search(text)
        if match:
            try:
                return RegistryPeriod.parse(match.group(1).lower(), match.group(2))
            except ValueError:
                continue
    raise RegistryError(f"{file_name}: cannot tell the registry's day or month from its name "
                        "or title; give --date YYYY-MM-DD or --month YYYY-MM")


def _check_container(content: bytes, file_name: str) -> None:
    """Refuse before unpacking: an old binary workbook, or a zip that would unpack to
    more than the limits (a zip bomb needs no more than its directory to be seen)."""
    if content.startswith(OLE2_MAGIC):
        raise RegistryError(f"{file_name}: an Excel 97-2003 binary workbook (.xls) or a "
                            "password-protected one, not an .xlsx: open it in Excel or "
                            "LibreOffice and save it as an Excel Workbook (.xlsx)")
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise RegistryError(f"{file_name}: not an xlsx workbook (not a zip file: "
                            f"{str(exc)[:200]})") from exc
    if len(members) > MAX_ZIP_MEMBERS:
        raise RegistryError(f"{file_name}: {len(members)} files in the workbook's zip, more "
                            f"than {MAX_ZIP_MEMBERS}")
    unpacked = sum(m.file_size for m in members)
    if unpacked > MAX_UNPACKED_BYTES:
        raise RegistryError(f"{file_name}: would unpack to {unpacked} bytes, more than "
                            f"{MAX_UNPACKED_BYTES} (refused unopened)")
    shared = sum(m.file_size for m in members
                 if m.filename.casefold().endswith("sharedstrings.xml"))
    if shared > MAX_SHARED_STRINGS_BYTES:
        raise RegistryError(f"{file_name}: {shared} bytes of shared strings, more than "
                            f"{MAX_SHARED_STRINGS_BYTES} (refused unopened)")


def _norm(value: object) -> str:
    return " ".join(str(value).split()).casefold() if value is not None else ""


_HEADER_NAMES = {_norm(name): column.field for column in COLUMNS for name in column.names}
_EXPECTED = "; ".join(column.shown for column in COLUMNS)


@dataclass(frozen=True, slots=True)
class _Sheet:
    sheet: Any
    header_row: int
    columns: dict[str, int]  # field -> column index


def _header(values: tuple[object, ...], where: str) -> dict[str, int] | None:
    """field -> column index when `values` is the registry's header; None when it names
    none of the columns; RegistryError when it is a header but not an unambiguous one."""
    fields = [(_HEADER_NAMES.get(_norm(v)), i) for i, v in enumerate(values)]
    found = [(f, i) for f, i in fields if f is not None]
    if len({f for f, _ in found}) < 2:  # a title can hold one of the words
        return None
    columns: dict[str, int] = {}
    for f, i in found:
        if f in columns:
            raise RegistryError(f"{where}: the column for {f} appears twice (columns "
                                f"{columns[f] + 1} and {i + 1}); which one holds the data "
                                "is ambiguous")
        columns[f] = i
    missing = [c.shown for c in COLUMNS if c.required and c.field not in columns]
    if missing:
        raise RegistryError(f"{where}: a header that lacks columns; missing "
                            f"{'; '.join(missing)} (found: {_cells(values)}; expected: "
                            f"{_EXPECTED})")
    return columns


def _cells(values: tuple[object, ...]) -> str:
    return ", ".join(str(v).strip() for v in values if v is not None and str(v).strip()) or (
        "nothing")


def _is_empty(values: tuple[object, ...]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


def _registry_sheets(workbook: Any, file_name: str, named: bool) -> list[_Sheet]:
    """Every sheet carrying the header. A sheet without it must be empty: data whose
    columns we cannot name is refused, not skipped."""
    sheets: list[_Sheet] = []
    for sheet in workbook.worksheets:
        where = f"{file_name}: sheet {sheet.title!r}" if named else file_name
        columns: dict[str, int] | None = None
        for number, values in enumerate(sheet.iter_rows(max_row=HEADER_SEARCH_ROWS,
                                                        values_only=True), start=1):
            columns = _header(values, f"{where} row {number}")
            if columns is not None:
                sheets.append(_Sheet(sheet, number, columns))
                break
        if columns is None:
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                if not _is_empty(values):
                    # An unknown layout: the first row with data is what it has instead.
                    raise RegistryError(
                        f"{file_name}: sheet {sheet.title!r} row {number} has data but the sheet "
                        f"has no header with the registry's columns in its first "
                        f"{HEADER_SEARCH_ROWS} rows (found: {_cells(values)}; expected: "
                        f"{_EXPECTED})")
    if not sheets:
        raise RegistryError(f"{file_name}: no sheet has the registry's columns (found: "
                            f"nothing; expected: {_EXPECTED})")
    return sheets


def _read_rows(workbook: Any, file_name: str, period: RegistryPeriod) -> list[RegistryRow]:
    named = len(workbook.worksheets) > 1  # name the sheet in messages only when it helps
    rows: list[RegistryRow] = []
    errors: list[str] = []
    seen: dict[tuple[str, OpType], str] = {}
    for found in _registry_sheets(workbook, file_name, named):
        title = found.sheet.title
        for number, values in enumerate(
                found.sheet.iter_rows(min_row=found.header_row + 1, values_only=True),
                start=found.header_row + 1):
            if _is_empty(values):
                continue  # Excel keeps formatted but empty rows
            where = f"sheet {title!r} row {number}" if named else f"row {number}"
            cells = {field: values[i] if i < len(values) else None
                     for field, i in found.columns.items()}
            if _is_totals(values, cells):
                continue
            if len(rows) >= MAX_ROWS:
                raise RegistryError(f"{file_name}: more than {MAX_ROWS} rows")
            try:
                row = _row(title, number, where, cells, period)
            except RegistryError as exc:
                errors.append(str(exc))
                if len(errors) >= MAX_ERRORS_SHOWN:
                    break
                continue
            key = (row.kaspi_id, row.type)
            if key in seen:
                first = seen[key]
                both = (f"rows {first.removeprefix('row ')} and {number}" if not named
                        else f"{first} and {where}")
                errors.append(f"{both}: the same Kaspi operation {row.kaspi_id} ({row.type}) "
                              "twice")
            else:
                seen[key] = where
            rows.append(row)
        if len(errors) >= MAX_ERRORS_SHOWN:
            break
    if errors:
        raise RegistryError(f"{file_name}: " + "; ".join(errors[:MAX_ERRORS_SHOWN]))
    return rows


def _is_totals(values: tuple[object, ...], cells: dict[str, object]) -> bool:
    """A totals line (Итого, Барлығы, ...) with no operation id: not an operation."""
    if any(_text(cells.get(f)) for f in ("kaspi_id", "kaspi_payment_id", "mpp_id")):
        return False
    return any(isinstance(v, str) and _norm(v).startswith(TOTALS_WORDS) for v in values)


def _row(sheet: str, number: int, where: str, cells: dict[str, object], period: RegistryPeriod
         ) -> RegistryRow:
    type_text = _norm(cells["type"])
    if type_text not in TYPE_NAMES:
        raise RegistryError(f"{where}: Тип операции {cells['type']!r} is neither Оплата "
                            "nor Возврат (Төлем, Қайтару; Payment, Refund)")
    at = _datetime(cells["at"], where)
    if not period.start <= at.date() < period.end:
        raise RegistryError(f"{where}: date {at:%Y-%m-%d %H:%M:%S} is outside the registry's "
                            f"{'day' if period.kind == 'daily' else 'month'} {period.label}")
    amount = _tiyn(cells["amount"], f"{where}: Сумма")
    if amount == 0:
        raise RegistryError(f"{where}: Сумма must be positive")
    fee = cells["fee"]
    fee_tiyn = 0 if fee is None or (isinstance(fee, str) and fee.strip() in NO_FEE) else (
        _tiyn(fee, f"{where}: Комиссия"))
    mpp_id = _text(cells["mpp_id"])
    # An absent ID платежа Kaspi column is no id; a present one must be filled.
    kaspi_payment_id = _required(cells["kaspi_payment_id"], f"{where}: ID платежа Kaspi") if (
        "kaspi_payment_id" in cells) else None
    return RegistryRow(sheet, number, _customer(cells["customer_id"], f"{where}: ID клиента"),
               mpp_id or None, _required(cells["kaspi_id"], f"{where}: ID операции Kaspi"),
               kaspi_payment_id, at, TYPE_NAMES[type_text], amount, fee_tiyn)


def _customer(value: object, where: str) -> str:
    """A customer id Excel stored as a number lost its leading zeros: an IIN has 12
    digits, so a shorter number is padded back (text cells are taken as they are)."""
    text = _required(value, where)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and text.isdigit() and len(text) < CUSTOMER_ID_DIGITS:
        return text.zfill(CUSTOMER_ID_DIGITS)
    return text


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

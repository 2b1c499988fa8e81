"""Money on the wire and in the books: integer tiyn inside, "1500.00" strings outside.

No float ever touches an amount. Kaspi's examples send bare JSON numbers (`100`,
`100.00`); JSON numbers are parsed as Decimal by our JSON loader so they arrive here
exactly as written.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

TIYN_PER_TENGE = 100
# 10^15 tiyn is far above any real payment and far below bigint's limit.
MAX_AMOUNT_TIYN = 10**15
# An amount as text: tenge with at most two decimals (the wire's and the schema's rule).
AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,15})(\.[0-9]{1,2})?$"
_AMOUNT_RE = re.compile(AMOUNT_PATTERN)


class AmountError(ValueError):
    """An amount that is not a non-negative number with at most two decimals."""


def parse_amount(value: object) -> int:
    """Parse "1500.00", "1500", 1500 or Decimal("1500.00") into tiyn."""
    if isinstance(value, bool):
        raise AmountError("amount must be a number or a string like \"1500.00\"")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise AmountError("amount must be finite")
        # str(), not format(): a JSON number written with an exponent (1e3) is refused.
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise AmountError("amount must be a number or a string like \"1500.00\"")
    if not _AMOUNT_RE.match(text):
        if text.startswith("-"):
            raise AmountError("amount must not be negative")
        raise AmountError(f"amount {text[:32]!r} must have at most two decimals")
    try:
        tiyn = int((Decimal(text) * TIYN_PER_TENGE).to_integral_exact())
    except InvalidOperation as exc:  # pragma: no cover - the regex rules it out
        raise AmountError(f"amount {text[:32]!r} is not a number") from exc
    if tiyn > MAX_AMOUNT_TIYN:
        raise AmountError("amount is too large")
    return tiyn


def format_amount(tiyn: int) -> str:
    """Format tiyn as Kaspi does: "1500.00"."""
    if tiyn < 0:
        raise ValueError("amounts on the wire are never negative")
    return f"{tiyn // TIYN_PER_TENGE}.{tiyn % TIYN_PER_TENGE:02d}"


def format_signed_amount(tiyn: int) -> str:
    """A statement line's amount: "-1500.00" for a debit, "1500.00" for a credit."""
    return ("-" if tiyn < 0 else "") + format_amount(abs(tiyn))


def is_whole_tenge(tiyn: int) -> bool:
    return tiyn % TIYN_PER_TENGE == 0

"""Identification levels and the e-money limits of each level, in MCI (docs/money.md,
"Identification and limits").

The Law on Payments and Payment Systems (art. 42 §5) obliges the issuer to identify an
individual who acquires e-money for more than 50 MCI (the monthly calculation index,
set each year by the law on the republican budget). The operator configures the
figures: `MCI_TENGE` (the tenge value of one MCI for the year) and `LIMITS_MCI` (JSON by
level, each key optional, a missing key is no limit). The rules themselves are decided
in SQL under the account's row lock (sql/functions/accounts.sql); this module only turns
the configuration into tiyn and names the limits in messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from functools import cached_property

from mpp_server import jsonutil
from mpp_server.money import TIYN_PER_TENGE, format_amount


class Level(StrEnum):
    NONE = "NONE"              # a new account: nobody has identified the customer
    SIMPLIFIED = "SIMPLIFIED"  # simplified (remote) identification
    FULL = "FULL"              # full identification


# The kinds of limit, as keys of LIMITS_MCI and of the SQL argument.
PAYMENT, DAILY, MONTHLY, BALANCE = "payment", "daily", "monthly", "balance"
KINDS = (PAYMENT, DAILY, MONTHLY, BALANCE)
_WHAT = {
    PAYMENT: "per-payment limit",
    DAILY: "daily payment limit (Kazakhstan calendar day, UTC+5)",
    MONTHLY: "monthly payment limit (Kazakhstan calendar month, UTC+5)",
    BALANCE: "balance cap",
}

# MCI for 2025 (Law "On the republican budget for 2025-2027"): 3 932 tenge. The budget
# law sets a new figure every year; the operator sets MCI_TENGE accordingly.
DEFAULT_MCI_TENGE = 3932
# What ships: an unidentified customer (NONE) never holds, nor pays at once, more than
# the 50 MCI of art. 42 §5. Figures for SIMPLIFIED and FULL, and daily or monthly
# turnover limits, are the operator's to set from the current rules.
DEFAULT_LIMITS_MCI = '{"NONE": {"payment": 50, "balance": 50}}'


class LimitsConfigError(ValueError):
    """LIMITS_MCI is not a JSON object of levels to objects of limits in MCI."""


@dataclass(frozen=True)
class Limits:
    """The configured limits, in MCI as given and in tiyn as enforced."""

    mci_tenge: int
    mci: Mapping[Level, Mapping[str, Decimal]]

    def tiyn(self, level: Level, kind: str) -> int | None:
        figure = self.mci.get(level, {}).get(kind)
        if figure is None:
            return None
        return int((figure * self.mci_tenge * TIYN_PER_TENGE).to_integral_value(ROUND_FLOOR))

    @cached_property
    def sql_arg(self) -> dict[str, dict[str, int]]:
        """payment_confirm's and balance_cap_exceeded's p_limits: tiyn by level and kind."""
        arg: dict[str, dict[str, int]] = {}
        for level, kinds in self.mci.items():
            arg[level.value] = {}
            for kind in kinds:
                tiyn = self.tiyn(level, kind)
                assert tiyn is not None
                arg[level.value][kind] = tiyn
        return arg

    @cached_property
    def sql_json(self) -> str:
        """`sql_arg` as JSON text, encoded once: a confirm passes it as `$n::text::jsonb`
        instead of having the driver encode the same dict on every call."""
        return json.dumps(self.sql_arg)

    def describe(self, level: str, kind: str) -> str:
        """"the daily payment limit (...) of identification level NONE (100 MCI =
        393200.00 KZT)", from the configuration as it is now."""
        what = f"the {_WHAT[kind]} of identification level {level}"
        figure = self.mci.get(Level(level), {}).get(kind)
        tiyn = self.tiyn(Level(level), kind)
        if figure is None or tiyn is None:
            return what
        return f"{what} ({figure} MCI = {format_amount(tiyn)} KZT)"


def parse_limits(text: str, mci_tenge: int) -> Limits:
    """LIMITS_MCI as the operator wrote it: numbers parsed as Decimal, never float."""
    try:
        data = jsonutil.loads(text)
    except jsonutil.JSONDecodeError as exc:
        raise LimitsConfigError(f"LIMITS_MCI is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise LimitsConfigError("LIMITS_MCI must be a JSON object by level")
    by_level: dict[Level, dict[str, Decimal]] = {}
    for level_name, kinds in data.items():
        if level_name not in Level.__members__:
            raise LimitsConfigError(f"LIMITS_MCI: {level_name!r} is not one of "
                                    f"{[v.value for v in Level]}")
        if not isinstance(kinds, dict):
            raise LimitsConfigError(f"LIMITS_MCI.{level_name} must be an object")
        level = Level(level_name)
        by_level[level] = {}
        for kind, figure in kinds.items():
            if kind not in KINDS:
                raise LimitsConfigError(f"LIMITS_MCI.{level_name}: {kind!r} is not one of "
                                        f"{list(KINDS)}")
            if figure is None:
                continue  # written out as "no limit"
            if isinstance(figure, bool) or not isinstance(figure, int | Decimal) or figure < 0:
                raise LimitsConfigError(f"LIMITS_MCI.{level_name}.{kind} must be a number "
                                        "of MCI, 0 or more")
            by_level[level][kind] = Decimal(figure)
    return Limits(mci_tenge, by_level)

"""The JSON types every answer we write shares (the wallet API, the reconciliation report):
money as "1500.00", times in Kazakhstan's offset."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema

from mpp_server.kaspi_client.models import KZ_TZ, AmountOut
from mpp_server.money import format_signed_amount

MONEY_PATTERN = r"^(0|[1-9][0-9]{0,15})\.[0-9]{2}$"

# Answers: built from tiyn, always written as "1500.00".
Money = Annotated[AmountOut, WithJsonSchema({
    "type": "string", "pattern": MONEY_PATTERN, "examples": ["1500.00"],
    "description": "tenge with two decimals"})]
# Statement lines, settlement figures: signed, "-1500.00" for a debit.
SignedMoney = Annotated[int, PlainSerializer(format_signed_amount, return_type=str),
                        WithJsonSchema({"type": "string", "pattern": "^-?" + MONEY_PATTERN[1:],
                                        "examples": ["-1500.00", "500.00"],
                                        "description": "signed tenge with two decimals: "
                                                       "negative for a debit"})]
Timestamp = Annotated[datetime, PlainSerializer(
    lambda d: d.astimezone(KZ_TZ).isoformat(timespec="seconds"), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time",
                    "examples": ["2024-02-19T15:57:41+05:00"]}, mode="serialization")]

"""LIMITS_MCI and MCI_TENGE: what ships, how the operator's JSON is read (Decimal, never
float), and what it refuses (mpp_server/domain/limits.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mpp_server.config import Settings
from mpp_server.domain.limits import Level, LimitsConfigError, parse_limits
from mpp_server.money import format_signed_amount


def test_the_default_follows_the_50_mci_identification_threshold() -> None:
    limits = Settings().limits
    assert limits.mci_tenge == 3932
    # 50 MCI x 3 932 tenge = 196 600.00 tenge, per payment and as the balance cap.
    assert limits.sql_arg == {"NONE": {"payment": 19_660_000, "balance": 19_660_000}}
    assert limits.tiyn(Level.NONE, "daily") is None
    assert limits.tiyn(Level.FULL, "balance") is None
    assert limits.describe("NONE", "balance") == (
        "the balance cap of identification level NONE (50 MCI = 196600.00 KZT)")


def test_limits_are_read_as_decimal_mci_and_floored_to_tiyn() -> None:
    limits = parse_limits('{"SIMPLIFIED": {"daily": 0.1, "monthly": null}, "FULL": {}}', 3932)
    assert limits.sql_arg == {"SIMPLIFIED": {"daily": 39_320}, "FULL": {}}
    assert parse_limits('{"NONE": {"payment": 0.333}}', 1).sql_arg == {
        "NONE": {"payment": 33}}
    assert parse_limits("{}", 3932).sql_arg == {}


@pytest.mark.parametrize("text", [
    "[]", "not json", '{"NOBODY": {}}', '{"NONE": []}', '{"NONE": {"weekly": 5}}',
    '{"NONE": {"daily": -1}}', '{"NONE": {"daily": "5"}}', '{"NONE": {"daily": true}}',
    '{"NONE": {"daily": NaN}}'])
def test_a_malformed_limits_mci_is_refused(text: str) -> None:
    with pytest.raises(LimitsConfigError):
        parse_limits(text, 3932)
    with pytest.raises(ValidationError):
        Settings(limits_mci=text)


def test_statement_amounts_are_signed() -> None:
    assert format_signed_amount(-150000) == "-1500.00"
    assert format_signed_amount(1) == "0.01"
    assert format_signed_amount(0) == "0.00"

from decimal import Decimal

import pytest

from mpp_server.money import AmountError, format_amount, is_whole_tenge, parse_amount


@pytest.mark.parametrize(("raw", "tiyn"), [
    ("100.00", 10000), ("100", 10000), ("0.5", 50), (100, 10000),
    (Decimal("100.00"), 10000), (Decimal("1500.05"), 150005), ("  7.10 ", 710),
])
def test_parse_amount_accepts_kaspi_forms(raw: object, tiyn: int) -> None:
    assert parse_amount(raw) == tiyn


@pytest.mark.parametrize("raw", ["-1.00", "1.001", "abc", "", "1e3", 1.5, True, None,
                                 Decimal("NaN"), "01.00", "99999999999999999.00"])
def test_parse_amount_refuses_bad_input(raw: object) -> None:
    with pytest.raises(AmountError):
        parse_amount(raw)


def test_format_amount_has_two_decimals() -> None:
    assert format_amount(10000) == "100.00"
    assert format_amount(5) == "0.05"
    assert is_whole_tenge(10000) and not is_whole_tenge(10050)

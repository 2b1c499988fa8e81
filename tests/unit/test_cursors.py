"""The one cursor grammar every paged list of the wallet API takes (mpp_server/cursors.py);
tests/api/test_cursors.py checks each list uses it."""

from __future__ import annotations

import pytest

from mpp_server import cursors
from mpp_server.errors import ValidationFailed


@pytest.mark.parametrize(("text", "position"), [
    (None, 0), ("", 0), ("0", 0), ("42", 42), ("0042", 42),
    ("999999999999999999", 10**18 - 1),
])
def test_a_cursor_is_ascii_digits(text: str | None, position: int) -> None:
    assert cursors.parse(text) == position


# Was taken: \d read Arabic-Indic and fullwidth digits, $ matched before a newline.
@pytest.mark.parametrize("text", [
    "١٢", "５", "²", "5\n", "5\r\n", "\n5", " 5", "5 ", "+5", "-1", "1_0", "5.0", "abc",
    "1234567890123456789",  # 19 digits: beyond bigint for some, so none
    "5-5",  # the event feed's old form is parse_legacy's
])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValidationFailed, match="ASCII digits"):
        cursors.parse(text)


@pytest.mark.parametrize(("text", "pair"), [
    ("0-0", (0, 0)), ("731-18", (731, 18)),
    ("18446744073709551615-9223372036854775807", (2**64 - 1, 2**63 - 1)),
    # not of the old form: parse decides (and refuses these)
    ("42", None), ("", None), (None, None), ("5-5\n", None), ("١-٢", None), ("5-", None),
])
def test_the_event_feeds_old_form(text: str | None, pair: tuple[int, int] | None) -> None:
    assert cursors.parse_legacy(text) == pair


@pytest.mark.parametrize("text", ["18446744073709551616-0", "0-9223372036854775808"])
def test_an_old_form_cursor_outside_its_types_is_refused(text: str) -> None:
    with pytest.raises(ValidationFailed):
        cursors.parse_legacy(text)


def test_a_cursor_beyond_the_end_is_refused_and_the_end_is_not() -> None:
    cursors.refuse_beyond_end(7, 7, "the list")
    cursors.refuse_beyond_end(cursors.START, cursors.START, "an empty list")
    with pytest.raises(ValidationFailed, match="after=8 is beyond the end of the list"):
        cursors.refuse_beyond_end(8, 7, "the list")


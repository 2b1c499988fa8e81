"""Cursors: how a reader pages through every list the wallet API hands out in order (the
event feed, an account's statement, a reconciliation run's items, and whatever pages
next), with one grammar and one rule for all of them (issue 29).

A cursor is the position of the last item read, a seq or an id in ASCII digits ("42");
absent or empty is the start. A page answers its items and the next cursor: the last
position it returned, or the one it was given when nothing follows yet. So a cursor the
server handed out is never beyond the end of its list, and one that is was made up,
belongs to another list (another customer's statement) or to a database since restored
to an earlier point. Taking it would skip, without a word, every item later given a
position at or below it; it is refused instead (`refuse_beyond_end`), so a reader holding
one learns it at its first read.

The event feed also takes its old form, "txid-id" (`parse_legacy`).
"""

from __future__ import annotations

import re

from mpp_server.errors import ValidationFailed

START = 0
# Positions are ids and seqs from bigint sequences; 18 digits is far beyond any we reach,
# and keeps every cursor the pattern lets through inside bigint (a larger number reached
# the database and overflowed there, a 500).
_DIGITS = "[0-9]{1,18}"
PATTERN = f"^{_DIGITS}$"
# The event feed's old cursor: an xid8 and a bigint event id.
LEGACY_PATTERN = r"^[0-9]{1,20}-[0-9]{1,19}$"
_MAX_TXID = 2**64 - 1
_MAX_EVENT_ID = 2**63 - 1
# fullmatch with [0-9], never \d and $: \d takes Arabic-Indic (١٢) and fullwidth (５)
# digits, which int() reads, and $ matches before a trailing newline ("5%0A").
_POSITION = re.compile(_DIGITS)
_LEGACY = re.compile(r"([0-9]{1,20})-([0-9]{1,19})")
_MALFORMED = "after must be a cursor returned as `next` (ASCII digits)"


def parse(text: str | None) -> int:
    """The position a cursor stands for: START when absent or empty."""
    if not text:
        return START
    if _POSITION.fullmatch(text) is None:
        raise ValidationFailed(_MALFORMED)
    return int(text)


def parse_legacy(text: str | None) -> tuple[int, int] | None:
    """(txid, event id) when `text` has the event feed's old form; None when it has not
    (then `parse` decides)."""
    match = _LEGACY.fullmatch(text or "")
    if match is None:
        return None
    txid, event_id = int(match.group(1)), int(match.group(2))
    if txid > _MAX_TXID or event_id > _MAX_EVENT_ID:
        raise ValidationFailed(_MALFORMED)
    return txid, event_id


def refuse_beyond_end(after: int, last: int, of: str) -> None:
    """ValidationFailed when the position `after` lies beyond the end of the list `of`
    (`last`: the last position in it, START when it is empty)."""
    if after > last:
        raise ValidationFailed(beyond_end(str(after), last, of))


def beyond_end(given: str, last: int, of: str) -> str:
    return (f"after={given} is beyond the end of {of} (its last position is {last}); a "
            f"cursor the server hands out never is, so nothing was read: go on from the "
            f"last `next` you were given")

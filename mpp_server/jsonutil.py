"""JSON in and out. Numbers with a fraction are read as Decimal, never float: Kaspi's
examples send amounts as bare numbers (`"refundAmount": 100.00`)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


class JSONDecodeError(ValueError):
    pass


def loads(raw: bytes | str) -> Any:
    """Parse JSON from a peer; whatever is wrong with it is a JSONDecodeError. Besides
    malformed text that covers what the standard parser raises other errors for: an
    integer of more than 4,300 digits (ValueError) and nesting deeper than the
    interpreter's recursion limit (RecursionError); both were a 500 (issue 14)."""
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JSONDecodeError(f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise JSONDecodeError("malformed JSON: nested too deeply") from exc
    except ValueError as exc:  # int() refuses more than sys.get_int_max_str_digits()
        raise JSONDecodeError(f"malformed JSON: {str(exc)[:120]}") from exc


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def _default(value: object) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_default)

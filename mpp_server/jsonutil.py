"""JSON in and out. Numbers with a fraction are read as Decimal, never float: Kaspi's
examples send amounts as bare numbers (`"refundAmount": 100.00`)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


class JSONDecodeError(ValueError):
    pass


class DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose key appears twice with different values is ambiguous: the
    standard parser silently keeps the last one (`"refundAmount"` given twice)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out and out[key] != value:
            raise DuplicateKey(f"{key[:64]} is given twice with different values")
        out[key] = value
    return out


def loads(raw: bytes | str, *, unique_keys: bool = False) -> Any:
    """Parse JSON from a peer; whatever is wrong with it is a JSONDecodeError. Besides
    malformed text that covers what the standard parser raises other errors for: an
    integer of more than 4,300 digits (ValueError) and nesting deeper than the
    interpreter's recursion limit (RecursionError); both were a 500 (issue 14). With
    `unique_keys`, a key given twice with different values is refused too."""
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant,
                          object_pairs_hook=_unique_keys if unique_keys else None)
    except DuplicateKey as exc:
        raise JSONDecodeError(str(exc)) from exc
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

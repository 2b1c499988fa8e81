"""Secrets and card data out of what the exchange journal keeps (mpp_server/journal.py).

The acquirers' exchanges carry OAuth client secrets and access tokens (Halyk ePay),
and may carry card data in callbacks and status answers (a masked PAN is harmless; a
full one, a CVV or an expiry date must never be stored). Whatever the format (JSON, a
form, Kapital's XML, a URL's query), the value of a field whose name says secret or
card is replaced, and then any run of 13-19 digits that passes the Luhn check (a card
number wherever it hides) keeps only its first six and last four digits, as PCI DSS
allows. Customer ids are not touched: the journal keeps them as the protocol needs them.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mpp_server import jsonutil

REDACTED = "[REDACTED]"
# Field names (compared lower-case, without `_` and `-`) whose values are never kept.
SECRET_FIELDS = frozenset({
    "clientsecret", "secret", "secrethash", "password", "passwd", "accesstoken",
    "refreshtoken", "idtoken", "token", "apikey", "authorization", "privatekey",
    "pan", "cardnumber", "cardno", "cvv", "cvv2", "cvc", "cvc2", "cvn", "cardcvv",
    "exp", "expiry", "expdate", "expirydate", "expirationdate", "expmonth", "expyear",
    "cardexpiry", "track2", "pin", "pinblock", "cardholdername", "cardholder",
})
_CARD_NUMBER = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
_XML_FIELD = re.compile(r"<([A-Za-z_][\w.-]*)(\s[^>]*)?>([^<]*)</\1>")


def _secret(name: str) -> bool:
    return name.lower().replace("_", "").replace("-", "") in SECRET_FIELDS


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def card_numbers(text: str) -> str:
    """Every Luhn-valid run of 13-19 digits, masked to its first six and last four."""
    def mask(match: re.Match[str]) -> str:
        digits = match.group(0)
        return digits[:6] + "*" * (len(digits) - 10) + digits[-4:] if _luhn(digits) else digits

    return _CARD_NUMBER.sub(mask, text)


def _walk(value: Any) -> tuple[Any, bool]:
    """The value with its secret fields replaced, and whether there was one."""
    if isinstance(value, dict):
        found = False
        out = {}
        for key, item in value.items():
            if _secret(str(key)):
                out[key], found = REDACTED, True
            else:
                out[key], inner = _walk(item)
                found = found or inner
        return out, found
    if isinstance(value, list):
        walked = [_walk(item) for item in value]
        return [item for item, _ in walked], any(inner for _, inner in walked)
    return value, False


def _json(text: str) -> str | None:
    """None when the text is not JSON; the text itself, unchanged to the byte, when it
    has no secret field."""
    try:
        value = jsonutil.loads(text)
    except jsonutil.JSONDecodeError:
        return None
    if not isinstance(value, dict | list):
        return None
    cleaned, found = _walk(value)
    return jsonutil.dumps(cleaned) if found else text


def _form(text: str) -> str | None:
    if "=" not in text or any(c in text for c in " \n<{"):
        return None
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        return None
    if not any(_secret(k) for k, _ in pairs):
        return text
    return urlencode([(k, REDACTED if _secret(k) else v) for k, v in pairs], safe="[]")


def _xml(text: str) -> str:
    def field(match: re.Match[str]) -> str:
        tag, attributes = match.group(1), match.group(2) or ""
        if not _secret(tag.rsplit(":", 1)[-1]):
            return match.group(0)
        return f"<{tag}{attributes}>{REDACTED}</{tag}>"

    return _XML_FIELD.sub(field, text)


def body(text: str | None) -> str | None:
    """A body as the journal keeps it: JSON, a form or XML with its secret fields
    replaced, and card numbers masked wherever they are."""
    if text is None:
        return None
    stripped = text.strip()
    cleaned = None
    if stripped[:1] in ("{", "["):
        cleaned = _json(stripped)
    if cleaned is None and stripped.startswith("<"):
        cleaned = _xml(text)
    if cleaned is None:
        cleaned = _form(stripped) or text
    return card_numbers(cleaned)


def url(text: str | None) -> str | None:
    """A target (`METHOD URL`): secret query parameters replaced, card numbers masked."""
    if text is None:
        return None
    method, _, address = text.rpartition(" ")
    parts = urlsplit(address)
    if parts.query:
        query = _form(parts.query) or parts.query
        address = urlunsplit(parts._replace(query=query))
    return card_numbers(f"{method} {address}" if method else address)

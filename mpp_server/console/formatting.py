"""How the console shows values (the templates' filters): money as tenge with the
thousands grouped, times in Kazakhstan time (UTC+5, as our API answers), customer ids
masked as the logs mask them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

from mpp_server.kaspi_client.models import KZ_TZ
from mpp_server.logs import mask_customer
from mpp_server.money import TIYN_PER_TENGE


def tenge(tiyn: int | None) -> str:
    """`1 500.00` (a thin space groups thousands); signed when negative; `—` for none."""
    if tiyn is None:
        return "—"
    whole, part = divmod(abs(tiyn), TIYN_PER_TENGE)
    return f"{'-' if tiyn < 0 else ''}{whole:,}.{part:02d}".replace(",", "\u2009")


def signed_tenge(tiyn: int | None) -> str:
    """A ledger movement: `+100.00` or `-100.00`."""
    if tiyn is None:
        return "—"
    return ("+" if tiyn > 0 else "") + tenge(tiyn)


def kz_time(at: datetime | None) -> str:
    if at is None:
        return "—"
    return at.astimezone(KZ_TZ).strftime("%Y-%m-%d %H:%M:%S")


def age(at: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the largest whole unit: `45 s`, `12 min`, `3 h`, `2 d`."""
    if at is None:
        return "—"
    seconds = int(((now or datetime.now(UTC)) - at).total_seconds())
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def web_link(url: str | None) -> str:
    """A link we may put in an href (a receipt): http(s) only, never `javascript:`."""
    return url if url and url.startswith(("https://", "http://")) else ""


# A journal subject `kind:id` and the page it opens.
_SUBJECT_PAGES = {"payment": "/payments/", "customer": "/customers/", "topup": "/topups/",
                  "dispute": "/search?q="}


def subject_view(subject: str) -> tuple[str, str]:
    """(the subject as shown, its page or ""): `customer:900912345678` is shown
    `customer 9009********`."""
    kind, _, ident = subject.partition(":")
    shown = mask_customer(ident) if kind == "customer" else ident
    page = _SUBJECT_PAGES.get(kind)
    return f"{kind} {shown}".strip(), page + quote(ident, safe="") if page else ""


FILTERS: dict[str, Callable[..., str]] = {
    "tenge": tenge, "signed_tenge": signed_tenge, "kz_time": kz_time, "age": age,
    "masked": mask_customer, "web_link": web_link}

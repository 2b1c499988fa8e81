"""`/search?q=ID`: any id an operator may be given, found where it lives. Each finder is
one indexed lookup; adding a kind of id is one entry in FINDERS. One hit opens its page;
several are listed; a customerId opens the customer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from mpp_server.db import Conn

MAX_QUERY_CHARS = 128


@dataclass(frozen=True)
class Hit:
    kind: str     # what the id turned out to be
    title: str    # the id as shown (masked for a customer)
    url: str


@dataclass(frozen=True)
class Finder:
    kind: str
    # SQL taking the id as $1, returning (target, title) rows: target goes into `page`
    sql: str
    page: str  # the page's path, {} for the target
    accepts: Callable[[str], bool] = lambda q: True
    title_is_customer: bool = False  # shown masked, as the logs show it


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


FINDERS: tuple[Finder, ...] = (
    Finder("payment (Kaspi's paymentId)",
           "SELECT payment_id, payment_id FROM payments WHERE payment_id = $1",
           "/payments/{}"),
    Finder("payment (our mppPaymentId)",
           "SELECT payment_id, mpp_payment_id::text FROM payments WHERE mpp_payment_id = $1::uuid",
           "/payments/{}", _is_uuid),
    Finder("refund from Kaspi (refundId)",
           "SELECT payment_id, refund_id FROM refunds WHERE refund_id = $1",
           "/payments/{}"),
    Finder("top-up (topupId)", "SELECT topup_id, topup_id FROM topups WHERE topup_id = $1",
           "/topups/{}"),
    Finder("top-up (the gateway's order id)",
           """SELECT topup_id, provider || ' order ' || provider_order_id FROM topups
               WHERE (provider, provider_order_id) IN (('halyk-epay', $1), ('kapital', $1),
                                                       ('kaspi-ecom', $1))""",
           "/topups/{}"),
    Finder("refund to the card (refundId)",
           "SELECT topup_id, refund_id FROM topup_refunds WHERE refund_id = $1",
           "/topups/{}"),
    Finder("dispute (disputeId)",
           "SELECT payment_id, dispute_id FROM disputes WHERE dispute_id = $1",
           "/payments/{}"),
    Finder("deposit (depositId)",
           "SELECT customer_id, deposit_id FROM deposits WHERE deposit_id = $1",
           "/customers/{}"),
    Finder("customer (customerId)",
           "SELECT customer_id, customer_id FROM accounts WHERE customer_id = $1",
           "/customers/{}", title_is_customer=True),
)


async def find(conn: Conn, query: str, mask: Callable[[str], str]) -> list[Hit]:
    """Every place the id is found; `mask` hides a customerId as the logs do."""
    query = query.strip()
    if not query or len(query) > MAX_QUERY_CHARS:
        return []
    hits = []
    for finder in FINDERS:
        if not finder.accepts(query):
            continue
        for target, title in await conn.fetch(finder.sql, query):
            hits.append(Hit(finder.kind, mask(title) if finder.title_is_customer else title,
                            finder.page.format(quote(target, safe=""))))
    return hits

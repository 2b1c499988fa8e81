"""The console's pages (GET): thin handlers over console/queries.py, overview.py,
search.py and the journal; what each shows is in docs/operations.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from mpp_server import audit, cursors
from mpp_server.console import operators, overview, queries, search
from mpp_server.console.operators import Role
from mpp_server.console.web import SETTINGS, Problem, pool_of, render, requires
from mpp_server.db import Conn
from mpp_server.domain.limits import Level
from mpp_server.logs import mask_customer
from mpp_server.reconcile import store

PAGE_ROWS = 50
MAX_ID_CHARS = 64

# What an action's redirect (`?done=KEY`) tells the operator: fixed texts only, so
# nothing typed by anyone is reflected into a page.
NOTICES = {
    "acknowledged": "The discrepancy is acknowledged.",
    "notify_DUE_NOW": "The notifyPayment is due now: a worker sends it within a second.",
    "notify_IN_PROGRESS": "A worker is sending this notifyPayment right now.",
    "notify_NOT_WAITING": "Nothing to retry: Kaspi has answered this payment's notify.",
    "topup_DUE_NOW": "The status check is due now: a worker asks the acquirer within a "
                     "second.",
    "topup_IN_PROGRESS": "A worker is checking this top-up's status right now.",
    "topup_NOT_WAITING": "Nothing to check: the top-up is decided.",
    "level_set": "The identification level is set; the next payment is checked against it.",
    "operator_disabled": "The operator is disabled and signed out everywhere.",
    "operator_unlocked": "The operator is unlocked.",
    "dispute_resolved": "The dispute is resolved; the wallet is told (dispute.resolved).",
    "webhook_REPLAYED": "The webhook is due again: a server sends it within a second.",
    "webhook_ALREADY_PENDING": "Nothing to replay: this webhook is being delivered.",
}


def _notice(request: web.Request) -> str:
    return NOTICES.get(request.query.get("done", ""), "")


def _id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise Problem(404, f"no such {name}")
    return value


def _cursor(request: web.Request, name: str) -> int | None:
    """A page's position (`before`, `after`): the API's cursor grammar; None: absent."""
    value = request.query.get(name, "")
    return cursors.parse(value) if value else None


async def home(request: web.Request) -> web.Response:
    async with pool_of(request).acquire() as conn:
        sections = await overview.load(conn, request.app[SETTINGS])
    return render(request, "overview.html", {"sections": sections,
                                             "notice": _notice(request)})


async def find(request: web.Request) -> web.StreamResponse:
    query = request.query.get("q", "").strip()
    hits: list[search.Hit] = []
    if query:
        async with pool_of(request).acquire() as conn:
            hits = await search.find(conn, query, mask_customer)
    if len(hits) == 1:
        raise web.HTTPSeeOther(hits[0].url)
    return render(request, "search.html", {"query": query[:search.MAX_QUERY_CHARS],
                                           "hits": hits})


async def payment(request: web.Request) -> web.Response:
    return await _life_page(request, "payment_id", queries.payment_life, "payment",
                            "No payment has this id.")


async def topup(request: web.Request) -> web.Response:
    return await _life_page(request, "topup_id", queries.topup_life, "topup",
                            "No top-up has this id.")


async def _life_page(request: web.Request, key: str,
                     load: Callable[[Conn, str], Awaitable[object | None]],
                     template: str, missing: str) -> web.Response:
    async with pool_of(request).acquire() as conn:
        life = await load(conn, _id(request, key))
    if life is None:
        raise Problem(404, missing)
    return render(request, f"{template}.html", {"life": life, "notice": _notice(request)})


async def customer(request: web.Request) -> web.Response:
    customer_id = request.match_info["customer_id"]
    async with pool_of(request).acquire() as conn:
        view = await queries.customer(conn, customer_id, request.app[SETTINGS].limits,
                                      statement_before=_cursor(request, "before"),
                                      statement_rows=PAGE_ROWS)
    if view is None:
        raise Problem(404, "No customer has this id (no account).")
    older = view.statement[-1].entry_id if len(view.statement) == PAGE_ROWS else None
    return render(request, "customer.html",
                  {"view": view, "customer_id": customer_id, "older": older,
                   "levels": [level.value for level in Level], "notice": _notice(request)})


async def reconciliation(request: web.Request) -> web.Response:
    before = _cursor(request, "before")
    async with pool_of(request).acquire() as conn:
        runs = await store.list_runs(conn, PAGE_ROWS, before)
        open_items = await conn.fetch(
            """SELECT * FROM reconciliation_discrepancies WHERE NOT resolved
                ORDER BY id DESC LIMIT $1""", PAGE_ROWS)
    older = runs[-1]["id"] if len(runs) == PAGE_ROWS else None
    return render(request, "reconciliation.html",
                  {"runs": runs, "open_items": open_items, "older": older,
                   "notice": _notice(request)})


async def reconciliation_run(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    if not run_id.isdigit() or len(run_id) > 18:
        raise Problem(404, "No such run.")
    after = _cursor(request, "after")
    async with pool_of(request).acquire() as conn:
        run = await store.get_run(conn, int(run_id))
        if run is None:
            raise Problem(404, "No such run.")
        items = await store.discrepancies(conn, run["id"], PAGE_ROWS,
                                          cursors.START if after is None else after)
    newer = items[-1]["id"] if len(items) == PAGE_ROWS else None
    return render(request, "reconciliation_run.html",
                  {"run": run, "items": items, "next_after": newer,
                   "notice": _notice(request)})


async def audit_page(request: web.Request) -> web.Response:
    actor = request.query.get("operator", "").strip()[:100] or None
    async with pool_of(request).acquire() as conn:
        entries = await audit.page(conn, actor=actor, before_id=_cursor(request, "before"),
                                     limit=PAGE_ROWS)
        logins = [row["login"] for row in await operators.list_all(conn)]
    older = entries[-1].id if len(entries) == PAGE_ROWS else None
    return render(request, "audit.html", {"entries": entries, "operator": actor or "",
                                          "logins": logins, "older": older})


@requires(Role.ADMIN)
async def operators_page(request: web.Request) -> web.Response:
    async with pool_of(request).acquire() as conn:
        rows = await operators.list_all(conn)
    return render(request, "operators.html", {"operators": rows, "notice": _notice(request)})

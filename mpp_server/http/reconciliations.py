"""GET /v1/reconciliations and /v1/reconciliations/{id}: the runs of
`python -m mpp_server reconcile` (docs/reconciliation.md), for the operator's screens.

The answer models are the back office's (reconcile/report.py, also the CLI's `--json`
report). A run's items come in pages (`limit`, `after`: a run of a bad month can have
hundreds of thousands).
"""

from __future__ import annotations

from aiohttp import web

from mpp_server import cursors
from mpp_server.errors import NotFound
from mpp_server.http.middleware import SERVICES, json_response, query_int
from mpp_server.reconcile import store
from mpp_server.reconcile.report import ReconciliationsOut, run_out

LIST_MAX_LIMIT = 500
ITEMS_DEFAULT_LIMIT = 500
ITEMS_MAX_LIMIT = 5000

async def list_reconciliations(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 50, 1, LIST_MAX_LIMIT)
    before = query_int(request, "before", None, 1, 2**63 - 1)
    assert limit is not None
    async with request.app[SERVICES].pool.acquire() as conn:
        runs = await store.list_runs(conn, limit, before)
    return json_response(ReconciliationsOut(reconciliations=[run_out(r) for r in runs]))


async def get_reconciliation(request: web.Request) -> web.Response:
    run_id = int(request.match_info["runId"])
    limit = query_int(request, "limit", ITEMS_DEFAULT_LIMIT, 1, ITEMS_MAX_LIMIT)
    after = cursors.parse(request.query.get("after"))
    assert limit is not None
    async with request.app[SERVICES].pool.acquire() as conn:
        run = await store.get_run(conn, run_id)
        if run is None:
            raise NotFound(f"reconciliation {run_id} not found")
        items = await store.discrepancies(conn, run_id, limit + 1, after)
    more = len(items) > limit
    return json_response(run_out(run, items[:limit],
                                 items[limit - 1]["id"] if more else None))

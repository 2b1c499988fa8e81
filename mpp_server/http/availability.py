"""The database going away (issue 14 item 10, issue 17; docs/high-availability.md).

Whatever the cause (refused, stalled past DB_ACQUIRE_TIMEOUT_MS or
DB_STATEMENT_TIMEOUT_MS, a connection that died mid-statement, a failover under way, a
standby where a primary was expected), a wallet call answers 503 DATABASE_UNAVAILABLE,
never 500 and never a hang. What a repeat does:
- a call that only reads, or a deposit (one transaction keyed by its depositId), is run
  again here once when its connection died mid-way (a switchover ends every session of
  the old primary): the new attempt's acquire waits for the new primary within
  DB_ACQUIRE_TIMEOUT_MS. A deposit whose first attempt had committed answers 200, the
  repeat's answer, credited once;
- any other write whose connection died mid-statement has an unknown outcome and answers
  503; each is safe to repeat: a confirm re-reads the payment and never debits twice (it
  answers the payment as it stands), a cancel of a cancelled payment answers it, a scan of
  the same Dynamic QR answers the same payment (a scan calls Kaspi first, a confirm may
  call it: not re-run here).
"""

from __future__ import annotations

import logging

from aiohttp import web

from mpp_server import db
from mpp_server.errors import DatabaseUnavailable
from mpp_server.http.routing import Handler, Rerun, route_name, route_of
from mpp_server.metrics import DB_UNAVAILABLE

log = logging.getLogger(__name__)


@web.middleware
async def database_unavailable(request: web.Request, handler: Handler
                               ) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if not db.is_unavailable(exc):
            raise
        failure: Exception = exc
    route = route_of(request)
    # Each route declares whether it may be run again (http/routes.py: reads, and writes
    # that are one transaction keyed by the caller's id and call no one else).
    rerunnable = route is not None and route.re_run in (Rerun.READ, Rerun.KEYED)
    if rerunnable and db.connection_lost(failure):
        try:
            return await handler(request)
        except Exception as exc:
            if not db.is_unavailable(exc):
                raise
            failure = exc
    DB_UNAVAILABLE.labels("wallet").inc()
    log.warning("database unavailable", extra={
        "route": route_name(request), "error": f"{type(failure).__name__}: {failure}"})
    raise DatabaseUnavailable("the database is unavailable; the call may be repeated "
                              "(docs/high-availability.md)") from failure

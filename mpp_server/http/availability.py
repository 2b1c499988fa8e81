"""The database going away (issue 14 item 10, issue 17; docs/high-availability.md).

Whatever the cause (refused, stalled past DB_ACQUIRE_TIMEOUT_MS or
DB_STATEMENT_TIMEOUT_MS, a connection that died mid-statement, a failover under way, a
standby where a primary was expected), a wallet call answers 503 DATABASE_UNAVAILABLE,
never 500 and never a hang. What a repeat does:
- a read (GET) is retried here once, when its connection died mid-way (a switchover
  ends every session of the old primary): the retry's acquire waits for the new primary
  within DB_ACQUIRE_TIMEOUT_MS;
- a write whose connection died mid-statement has an unknown outcome; each is safe to
  repeat: a deposit is keyed by its depositId, a confirm re-reads the payment and never
  debits twice (it answers the payment as it stands), a cancel of a cancelled payment
  answers it, a scan of the same Dynamic QR answers the same payment.
"""

from __future__ import annotations

import logging

from aiohttp import web

from mpp_server import db
from mpp_server.errors import DatabaseUnavailable
from mpp_server.http.middleware import Handler, route_name
from mpp_server.metrics import DB_UNAVAILABLE

log = logging.getLogger(__name__)
READS = ("GET", "HEAD")


@web.middleware
async def database_unavailable(request: web.Request, handler: Handler
                               ) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if not db.is_unavailable(exc):
            raise
        failure: Exception = exc
    if request.method in READS and db.connection_lost(failure):
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

"""`python -m mpp_server serve`: the wallet listener, the Kaspi-facing listener, the
acquiring (card top-up callbacks) listener, the operators' console, the notifyPayment
worker, the top-up status poller and refund outbox, the webhook sender (with WEBHOOK_URL)
and the gauge refresher, in one process.

Several such processes may run against one database: the outbox is shared safely
(FOR UPDATE SKIP LOCKED), every money movement is guarded by row locks and unique keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import pydantic
from aiohttp import web
from aiohttp.typedefs import Middleware

from mpp_server import db, migrate, retention, topup_wiring
from mpp_server.acquirers.base import TlsFilesUnreadable
from mpp_server.config import Settings, describe_settings_error, parse_listen
from mpp_server.console import app as console_app
from mpp_server.domain import disputes, payments
from mpp_server.domain.outbox import NotifyOutbox
from mpp_server.http import acquiring_listener, openapi, refund_listener, unreadable
from mpp_server.http import topups as topups_api
from mpp_server.http.availability import database_unavailable
from mpp_server.http.middleware import (
    LISTENER,
    SERVICES,
    TOKENS,
    bearer_auth,
    error_response,
    metrics_middleware,
    token_scopes,
    wallet_errors,
)
from mpp_server.http.routes import ROUTES
from mpp_server.http.routing import Listener, register
from mpp_server.journal import Journal
from mpp_server.kaspi_client.client import KaspiClient
from mpp_server.logs import setup_logging
from mpp_server.metrics import (
    DISPUTES_OPEN,
    DISPUTES_OVERDUE,
    OUTBOX_DEPTH,
    OUTBOX_OLDEST_AGE,
    PENDING_OLDEST_AGE,
)
from mpp_server.reconcile import store as reconcile_store
from mpp_server.services import Services, webhook_policy
from mpp_server.webhooks.sender import WebhookSender

log = logging.getLogger(__name__)


def _app(listener: Listener, middlewares: list[Middleware], max_body_bytes: int,
         svc: Services | None = None) -> web.Application:
    """A listener's app: its middlewares and its declared routes (http/routes.py)."""
    app = web.Application(middlewares=middlewares, client_max_size=max_body_bytes)
    app[LISTENER] = listener
    if svc is not None:
        app[SERVICES] = svc
    register(app, ROUTES, listener, openapi.render(openapi.build(listener)))
    return app


def create_wallet_app(svc: Services, topups: topups_api.TopupServices) -> web.Application:
    app = _app("wallet", [metrics_middleware, wallet_errors, database_unavailable,
                          bearer_auth], svc.settings.max_body_bytes, svc)
    app[TOKENS] = token_scopes(svc.settings)
    app[topups_api.TOPUP_SERVICES] = topups
    return app


def create_refund_app(svc: Services) -> web.Application:
    return _app("kaspi", [metrics_middleware, refund_listener.source_allowlist,
                          refund_listener.inbound_log], svc.settings.max_body_bytes, svc)


def create_acquiring_app(topups: topups_api.TopupServices) -> web.Application:
    app = _app("acquiring", [metrics_middleware, acquiring_listener.journal_callbacks],
               acquiring_listener.MAX_CALLBACK_BYTES)
    app[topups_api.TOPUP_SERVICES] = topups
    return app


async def refresh_gauges(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("""
            SELECT (SELECT count(*) FROM notify_outbox) AS depth,
                   (SELECT extract(epoch FROM now() - min(created_at)) FROM notify_outbox)
                     AS outbox_age,
                   (SELECT extract(epoch FROM now() - min(p.confirmed_at))
                      FROM notify_outbox o JOIN payments p USING (payment_id)
                     WHERE p.status = 'PENDING') AS pending_age""")
    # Every PENDING payment has its outbox row (staged with the debit, removed with
    # Kaspi's answer): the outbox is where the PENDING ones are found (migration 023).
    assert row is not None
    OUTBOX_DEPTH.set(row["depth"])
    OUTBOX_OLDEST_AGE.set(float(row["outbox_age"] or 0))
    PENDING_OLDEST_AGE.set(float(row["pending_age"] or 0))
    async with pool.acquire() as conn:
        open_disputes = await disputes.counts(conn)
    DISPUTES_OPEN.set(open_disputes["open"])
    DISPUTES_OVERDUE.set(open_disputes["overdue"])
    await reconcile_store.refresh_metrics(pool)


async def housekeeping(pool: asyncpg.Pool, interval_s: float) -> None:
    while True:
        try:
            await payments.expire_stale(pool)
            await refresh_gauges(pool)
        except Exception as exc:  # the database away, or a bug: log, count, carry on
            db.background_failure("housekeeping", exc)
        await asyncio.sleep(interval_s)


def _socket(listen: str) -> socket.socket:
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Several worker processes may share one port (the kernel spreads connections).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


@dataclass
class Runtime:
    """Everything one server process owns; `start()` then `stop()`."""

    settings: Settings
    wallet_url: str = ""
    kaspi_url: str = ""
    acquiring_url: str = ""
    admin_url: str = ""
    _runners: list[web.AppRunner] = field(default_factory=list)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _pool: asyncpg.Pool | None = None
    _session: aiohttp.ClientSession | None = None
    _journal: Journal | None = None
    services: Services | None = None
    _topups: topups_api.TopupServices | None = None

    async def start(self) -> None:
        s = self.settings
        self._pool = await db.create_pool(s.database_url, s.db_pool_min, s.db_pool_max,
                                         count_queries=s.db_query_metrics,
                                         acquire_timeout_ms=s.db_acquire_timeout_ms,
                                         statement_timeout_ms=s.db_statement_timeout_ms)
        connector = aiohttp.TCPConnector(limit=s.db_pool_max * 4, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector)
        self._journal = Journal(self._pool)
        self._journal.start()
        kaspi = KaspiClient(self._session, s.kaspi_base_url, s.kaspi_caller_name,
                            s.kaspi_timeout_ms, self._journal)
        outbox = NotifyOutbox(self._pool, kaspi,
                              initial_backoff_s=s.notify_backoff_initial_ms / 1000,
                              max_backoff_s=s.notify_backoff_max_ms / 1000,
                              concurrency=s.notify_worker_concurrency,
                              poll_interval_s=s.notify_poll_interval_ms / 1000,
                              kaspi_timeout_s=s.kaspi_timeout_ms / 1000)
        self.services = Services(self._pool, kaspi, s, outbox, self._journal)
        topups = topup_wiring.build(s, self._pool, self._session, self._journal)
        self._topups = topups
        self.wallet_url = await self._listen(create_wallet_app(self.services, topups),
                                             s.wallet_listen)
        self.kaspi_url = await self._listen(create_refund_app(self.services), s.kaspi_listen,
                                            refund_listener.unreadable_answer)
        self.acquiring_url = await self._listen(create_acquiring_app(topups),
                                                s.acquiring_listen)
        self.admin_url = await self._listen(console_app.create_app(self._pool, s),
                                            s.admin_listen)
        self._tasks.append(asyncio.create_task(outbox.run()))
        self._tasks.append(asyncio.create_task(topups.topups.run_poller()))
        self._tasks.append(asyncio.create_task(topups.refunds.run()))
        self._tasks.append(asyncio.create_task(
            housekeeping(self._pool, s.gauges_refresh_ms / 1000)))
        if s.webhook_url:  # unset: no webhooks (the deliveries wait; the feed works)
            sender = WebhookSender(self._pool, self._session, webhook_policy(s),
                                   self._journal)
            self._tasks.append(asyncio.create_task(sender.run()))
        self._tasks.append(asyncio.create_task(retention.run(
            self._pool, s.exchange_retention_days, s.events_retention_days)))
        log.info("mpp-server started", extra={"wallet": self.wallet_url,
                                              "kaspi_facing": self.kaspi_url,
                                              "acquiring": self.acquiring_url,
                                              "console": self.admin_url,
                                              "kaspi_base_url": s.kaspi_base_url})

    async def _listen(self, app: web.Application, listen: str,
                      answer: unreadable.Answer = error_response) -> str:
        """Serve `app`; a request the HTTP parser cannot read gets `answer`, the
        listener's own error form (http/unreadable.py)."""
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        sock = _socket(listen)
        self._servers.append(await unreadable.serve(runner, sock, app[LISTENER], answer))
        host, port = sock.getsockname()[:2]
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._topups is not None:
            await self._topups.topups.stop()
        for server in self._servers:
            server.close()
        for runner in reversed(self._runners):
            await runner.cleanup()
        if self._journal is not None:  # after every exchange it could record has ended
            await self._journal.close()
        if self._session is not None:
            await self._session.close()
        if self._pool is not None:
            await self._pool.close()


async def serve_forever(settings: Settings) -> None:
    runtime = Runtime(settings)
    await runtime.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("mpp-server stopping")
    await runtime.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server serve",
        description="Run the wallet API, the Kaspi-facing /refund and the notify worker. "
                    "Configuration comes from the environment (see README).")
    parser.add_argument("--migrate", action="store_true",
                        help="apply pending sql/ migrations before starting")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        topup_wiring.tls_contexts(settings)  # the certificate files read, before anything
    except pydantic.ValidationError as exc:
        print(f"mpp-server: configuration refused: {describe_settings_error(exc)}",
              file=sys.stderr)
        return 2
    except TlsFilesUnreadable as exc:
        print(f"mpp-server: configuration refused: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        if args.migrate:
            try:
                runner.run(migrate.migrate(settings.database_url))
            except migrate.MigrationChanged as exc:
                log.error("migrate refused", extra={"error": str(exc)})
                return 1
        runner.run(serve_forever(settings))
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed: a faster event loop, same semantics."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop

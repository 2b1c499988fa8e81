"""The operators' console on ADMIN_LISTEN: the application and its routes, in one place.

Served by `python -m mpp_server serve` beside the wallet, Kaspi-facing and acquiring
listeners, on its own socket: none of its paths exists on the others. Server-rendered
HTML (Jinja2, autoescaped), one stylesheet of ours, no script, nothing from outside.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import asyncpg
import jinja2
from aiohttp import web

from mpp_server.config import Settings
from mpp_server.console import action_pages, login_pages, pages
from mpp_server.console.formatting import FILTERS, subject_view
from mpp_server.console.web import (
    POOL,
    SETTINGS,
    STATIC_PREFIX,
    error_pages,
    guarded,
    security_headers,
    signed_in,
)
from mpp_server.http.middleware import LISTENER, metrics_middleware

HERE = Path(__file__).parent


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/login", login_pages.login_form, name="login")
    r.add_post("/login", login_pages.login)
    r.add_post("/logout", login_pages.logout)
    r.add_get("/", pages.home)
    r.add_get("/search", pages.find)
    r.add_get("/payments/{payment_id}", pages.payment)
    r.add_post("/payments/{payment_id}/notify-retry", action_pages.notify_retry)
    r.add_get("/customers/{customer_id}", pages.customer)
    r.add_post("/customers/{customer_id}/identification", action_pages.identification)
    r.add_get("/topups/{topup_id}", pages.topup)
    r.add_post("/topups/{topup_id}/status-check", action_pages.topup_check)
    r.add_get("/reconciliation", pages.reconciliation)
    r.add_get("/reconciliation/runs/{run_id}", pages.reconciliation_run)
    r.add_post("/reconciliation/discrepancies/{item_id}/acknowledge", action_pages.acknowledge)
    r.add_post("/disputes/{dispute_id}/resolve", action_pages.dispute_resolve)
    r.add_post("/webhooks/{event_id}/replay", action_pages.webhook_replay)
    r.add_get("/audit", pages.audit_page)
    r.add_get("/operators", pages.operators_page)
    r.add_post("/operators/{login}/disable", action_pages.operator_disable)
    r.add_post("/operators/{login}/unlock", action_pages.operator_unlock)
    r.add_static(STATIC_PREFIX, HERE / "static", append_version=True, name="static")


def create_app(pool: asyncpg.Pool, settings: Settings) -> web.Application:
    app = web.Application(middlewares=[metrics_middleware, error_pages, signed_in, guarded],
                          client_max_size=settings.max_body_bytes)
    app[LISTENER] = "console"
    app[POOL] = pool
    app[SETTINGS] = settings
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, filters=FILTERS)
    env.globals["subject_view"] = subject_view
    env.globals["static"] = lambda name: app.router["static"].url_for(filename=name)
    app.on_response_prepare.append(security_headers)
    add_routes(app)
    return app

"""What every console request goes through (console/app.py puts them in order):

1. `error_pages`: a failure is an HTML page with its status, never a stack trace; the
   database away is 503.
2. `signed_in`: every path but /login and /static/ needs a live session, else a
   redirect to /login (`identify` is the one place a request becomes an operator: a
   proxy's X-Remote-User would be read there, docs/operations.md).
3. `guarded`: a request that may change something (any method but GET and HEAD) comes
   from our own pages (Origin, when the browser sends it, is ours) and, but for /login,
   carries the session's CSRF token in its form (`csrf_token`): otherwise 403 and the
   handler never runs. Then the role: a handler marked `@requires(Role.X)` needs at
   least X; any other handler that changes something needs OPERATOR, one that only
   reads VIEWER. A viewer may look, not act.
And on every response (`security_headers`): a strict Content-Security-Policy (our own
styles, no script at all, no frames), no caching, no referrer.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp_jinja2
import asyncpg
from aiohttp import web
from multidict import MultiDictProxy

from mpp_server import db
from mpp_server.config import Settings
from mpp_server.console import sessions
from mpp_server.console.operators import Role
from mpp_server.console.sessions import Resumed, Session
from mpp_server.errors import WalletError
from mpp_server.http.routing import route_name
from mpp_server.metrics import DB_UNAVAILABLE

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

POOL: web.AppKey[asyncpg.Pool] = web.AppKey("console_pool", asyncpg.Pool)
SETTINGS: web.AppKey[Settings] = web.AppKey("console_settings", Settings)
SESSION: web.RequestKey[Session] = web.RequestKey("console_session", Session)

PUBLIC_PATHS = ("/login",)
STATIC_PREFIX = "/static/"
READS = ("GET", "HEAD")
_ROLE_ATTR = "_console_role"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_STATUS_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found",
                  405: "Not allowed", 413: "Too large", 500: "Something went wrong",
                  503: "The database is unavailable"}


def requires(role: Role) -> Callable[[H], H]:
    """Mark a handler with the least role that may call it."""
    def mark(handler: H) -> H:
        setattr(handler, _ROLE_ATTR, role)
        return handler
    return mark


def needed_role(request: web.Request) -> Role:
    marked: Role | None = getattr(request.match_info.handler, _ROLE_ATTR, None)
    if marked is not None:
        return marked
    return Role.VIEWER if request.method in READS else Role.OPERATOR


def session_of(request: web.Request) -> Session:
    return request[SESSION]


def pool_of(request: web.Request) -> asyncpg.Pool:
    return request.app[POOL]


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer, errors and static files included."""
    response.headers.update(_HEADERS)
    if not request.path.startswith(STATIC_PREFIX):
        response.headers["Cache-Control"] = "no-store"


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html",
                  {"status": status, "message": message,
                   "title": _STATUS_TITLES.get(status, "Error")}, status=status)


class Problem(Exception):
    """A request refused or failed in a way the operator is told (an error page with
    this status and message; the message may quote what someone typed: it is escaped)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def refused(why: str) -> Problem:
    return Problem(403, why)


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as exc:
        return error_page(request, exc.status, exc.message)
    except WalletError as exc:  # a domain refusal (a bad cursor, no such account)
        return error_page(request, exc.http_status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_page(request, exc.status, exc.reason)
    except Exception as exc:
        if db.is_unavailable(exc):
            DB_UNAVAILABLE.labels("console").inc()
            log.warning("database unavailable", extra={"route": route_name(request),
                                                       "error": f"{type(exc).__name__}"})
            return error_page(request, 503, "The database did not answer in time; reload "
                                            "the page in a moment.")
        log.exception("console error", extra={"route": route_name(request)})
        return error_page(request, 500, "The error was logged; nothing was changed unless "
                                        "the page says so.")


async def identify(request: web.Request) -> Session | Resumed:
    """The operator a request comes from: today the session cookie of a password
    sign-in. (A proxy login would read X-Remote-User here, from a trusted address only,
    and find or open the same kind of session.)"""
    token = request.cookies.get(sessions.COOKIE, "")
    if not _TOKEN.match(token):
        return Resumed.NONE
    return await sessions.resume(pool_of(request), token)


def local_path(target: str | None) -> str:
    """Where to go after sign-in: a path of ours only (no open redirect)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) \
            and len(target) <= 2000 and target.isprintable():
        return target
    return "/"


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.path.startswith(STATIC_PREFIX):
        return await handler(request)
    found = await identify(request)
    if isinstance(found, Resumed):
        query: dict[str, str] = {"next": request.path_qs} if request.method in READS else {}
        if found is Resumed.EXPIRED:
            query["expired"] = "1"
        response = see_other(str(request.app.router["login"].url_for().with_query(query)))
        if found is Resumed.EXPIRED:
            response.del_cookie(sessions.COOKIE, path="/")
        return response
    request[SESSION] = found
    return await handler(request)


def _same_origin(request: web.Request) -> bool:
    """A browser's Origin header, when sent, names our own address (the proxy's, when
    ADMIN_PUBLIC_URL is set); no Origin (an older browser, a tool) is left to the token."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    host = origin.partition("://")[2]
    public = request.app[SETTINGS].admin_public_url.partition("://")[2].rstrip("/")
    return host in (request.host, public)


async def form_of(request: web.Request) -> MultiDictProxy[str]:
    """The posted form's text fields (files are refused)."""
    form = await request.post()
    if any(not isinstance(v, str) for v in form.values()):
        raise Problem(400, "A form of text fields only.")
    return form  # type: ignore[return-value]


@web.middleware
async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.match_info.http_exception is not None  # no such route: 404/405
            or request.path.startswith(STATIC_PREFIX)):
        return await handler(request)
    if request.method not in READS:
        if not _same_origin(request):
            log.warning("console: a form from another origin refused",
                        extra={"route": route_name(request)})
            raise refused("This form did not come from the console's own pages.")
        if request.path not in PUBLIC_PATHS:
            sent = (await form_of(request)).get("csrf_token", "")
            if not hmac.compare_digest(sent.encode(), session_of(request).csrf_token.encode()):
                log.warning("console: a form without this session's CSRF token refused",
                            extra={"route": route_name(request),
                                   "operator": session_of(request).login})
                raise refused("The form's security token is missing or belongs to another "
                              "session: reload the page and try again. Nothing was changed.")
    if request.path not in PUBLIC_PATHS:
        role, needed = session_of(request).role, needed_role(request)
        if not role.may(needed):
            raise refused(f"Your role ({role}) may not do this; it needs {needed}. "
                          "Nothing was changed.")
    return await handler(request)


def see_other(location: str) -> web.Response:
    """303 after a form (the browser then GETs `location`)."""
    return web.Response(status=303, headers={"Location": location})


def render(request: web.Request, template: str, context: dict[str, Any],
           status: int = 200) -> web.Response:
    """Every page gets who is signed in (`me`, None on /login and some errors), the
    session's CSRF token for its forms, the path, and a notice (none by default)."""
    session = request.get(SESSION)
    common = {"me": session, "csrf_token": session.csrf_token if session else "",
              "path": request.path, "request": request, "notice": ""}
    return aiohttp_jinja2.render_template(template, request, {**common, **context},
                                          status=status)

"""`/login` and `/logout`: the password sign-in (console/signin.py) on the wire."""

from __future__ import annotations

from aiohttp import web

from mpp_server.console import sessions, signin
from mpp_server.console.formatting import kz_time
from mpp_server.console.operators import Role
from mpp_server.console.web import (
    SETTINGS,
    form_of,
    local_path,
    pool_of,
    render,
    requires,
    see_other,
    session_of,
)

_LOCKED_STATUS = 429


def _login_page(request: web.Request, *, error: str = "", status: int = 200,
                login: str = "") -> web.Response:
    query = request.query
    notice = ("Your session ended after 15 minutes without activity; sign in again."
              if query.get("expired") else
              "You have signed out." if query.get("signed_out") else "")
    return render(request, "login.html",
                  {"error": error, "notice": notice, "login": login,
                   "next": local_path(query.get("next"))}, status=status)


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    typed, password = form.get("login", ""), form.get("password", "")
    outcome = await signin.sign_in(pool_of(request), typed, password, request.remote)
    if isinstance(outcome, signin.Refused):
        shown = typed.strip()[:64]
        if outcome.why is signin.Refusal.LOCKED:
            until = outcome.locked_until
            return _login_page(
                request, status=_LOCKED_STATUS, login=shown,
                error=f"This login is locked after {signin.MAX_FAILURES} failed sign-ins"
                      f"{f' until {kz_time(until)}' if until else ''}; "
                      "an admin can unlock it sooner.")
        return _login_page(request, status=401, login=shown,
                           error="Wrong login or password.")
    response = see_other(local_path(form.get("next")))
    response.set_cookie(sessions.COOKIE, outcome.token, httponly=True, samesite="Strict",
                        secure=_behind_tls(request), path="/")
    return response


def _behind_tls(request: web.Request) -> bool:
    """Secure cookies when the browser reaches us over TLS: directly, or through the
    bank's reverse proxy (ADMIN_PUBLIC_URL https://...)."""
    return request.secure or request.app[SETTINGS].admin_public_url.startswith("https://")


@requires(Role.VIEWER)
async def logout(request: web.Request) -> web.StreamResponse:
    await signin.sign_out(pool_of(request), session_of(request), request.remote)
    response = see_other("/login?signed_out=1")
    response.del_cookie(sessions.COOKIE, path="/")
    return response


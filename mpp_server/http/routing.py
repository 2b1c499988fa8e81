"""Each route declared once (docs/design.md, "Routes"): its path, handler, who may call
it, whether a call whose database connection died may be run again, its request and
answer models and the errors it may answer. Everything else reads the declaration:
`register` (the router, the path and query checks), middleware.bearer_auth (the token's
scope), availability.database_unavailable (the re-run), middleware.wallet_errors (an
error a route does not declare is counted) and http/openapi.py (the description).
The table itself is http/routes.py.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from mpp_server import errors
from mpp_server.errors import ValidationFailed, WalletError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Listener = Literal["wallet", "kaspi", "acquiring"]


class Scope(StrEnum):
    """Who may call a route. A bearer token has the scopes of the lists it is in."""

    PUBLIC = "public"        # no token: probes and metrics (keep the listener private)
    WALLET = "wallet"        # WALLET_API_TOKENS: the wallet's mobile backend
    DEPOSIT = "deposit"      # DEPOSIT_API_TOKENS: core banking; creates money, sets identity
    KASPI = "kaspi"          # a source address in KASPI_ALLOWED_NETWORKS (the listener's)
    ACQUIRER = "acquirer"    # anyone: a callback only makes us ask the acquirer's status API

    @property
    def bearer(self) -> bool:
        return self in (Scope.WALLET, Scope.DEPOSIT)


class Rerun(Enum):
    """What the server does when a call's database connection died mid-way (a failover):
    run it again once (its outcome is then known), or answer 503 DATABASE_UNAVAILABLE
    and leave the repeat to the caller (every call is safe to repeat:
    http/availability.py)."""

    READ = "read"    # reads only
    KEYED = "keyed"  # one transaction keyed by the caller's id, and calls no one else
    NEVER = "never"  # may have committed, or called Kaspi or an acquirer


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Answer:
    description: str
    model: type[BaseModel] | None = None
    examples: Mapping[str, BaseModel] = field(default_factory=dict)
    media_type: str = "application/json"
    raw_schema: Mapping[str, Any] | None = None  # for answers that are not a model


# Errors every route of a kind may answer, whatever its handler does.
_BEARER_ERRORS = (errors.Unauthorized, errors.Forbidden)
_BODY_ERRORS = (errors.ValidationFailed, errors.PayloadTooLarge)
_PARAM_ERRORS = (errors.ValidationFailed,)
_DATABASE_ERRORS = (errors.DatabaseUnavailable,)


@dataclass(frozen=True)
class Route:
    listeners: tuple[Listener, ...]
    method: str
    path: str  # the router's and the description's: `{paymentId}` names the parameter
    handler: Handler
    operation_id: str
    summary: str
    description: str = ""
    tag: str = "wallet"
    scope: Scope = Scope.WALLET
    rerun: Rerun | None = None  # None: READ for GET, NEVER otherwise
    params: tuple[Param, ...] = ()
    request: type[BaseModel] | None = None
    # Request examples stay as written (a bare number stays bare); openapi validates them.
    request_examples: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    answers: Mapping[int, Answer] = field(default_factory=dict)
    # The wallet-API errors the handler may raise (beyond those every route of its kind
    # may answer: errors_answered), as {"error": {code, message}}.
    errors: tuple[type[WalletError], ...] = ()
    # Scan and checkout pass Kaspi's own codes through (errors.KaspiRefused).
    passes_kaspi_codes: bool = False
    uses_database: bool = True

    @property
    def re_run(self) -> Rerun:
        return self.rerun or (Rerun.READ if self.method == "get" else Rerun.NEVER)

    def errors_answered(self) -> dict[str, int]:
        """Every wallet-API error code this route may answer, with its HTTP status."""
        if "wallet" not in self.listeners:
            return {}
        kinds: list[type[WalletError]] = list(self.errors)
        if self.scope.bearer:
            kinds += _BEARER_ERRORS
        if self.request is not None:
            kinds += _BODY_ERRORS
        if self.params:
            kinds += _PARAM_ERRORS
        if self.uses_database and self.scope is not Scope.PUBLIC:
            kinds += _DATABASE_ERRORS
        codes = {kind.code: kind.http_status for kind in kinds}
        if self.passes_kaspi_codes:
            codes.update(errors.KASPI_HTTP_STATUS)
        return codes

    def answers_error(self, exc: WalletError) -> bool:
        declared = self.errors_answered()
        return declared.get(exc.code) == exc.http_status or (
            self.passes_kaspi_codes and isinstance(exc, errors.KaspiRefused))


# What each listener's app keeps: its routes by (METHOD, path).
ROUTES: web.AppKey[dict[tuple[str, str], Route]] = web.AppKey("routes", dict)
OPENAPI_TEXT: web.AppKey[str] = web.AppKey("openapi_text", str)


def route_of(request: web.Request) -> Route | None:
    """The declaration of the route a request matched; None for a 404 or 405."""
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    return request.app[ROUTES].get((method, resource.canonical))


def route_name(request: web.Request) -> str:
    """The route's path for metric labels and logs ("unmatched" for a 404)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _checked(route: Route) -> Handler:
    """The handler behind the declared checks: each path parameter matches its pattern,
    and a route that takes query parameters refuses one it does not know (a misspelt
    cursor must not silently restart a feed)."""
    paths = [(p.name, re.compile(p.schema["pattern"])) for p in route.params
             if p.where == "path"]
    queries = frozenset(p.name for p in route.params if p.where == "query")

    async def checked(request: web.Request) -> web.StreamResponse:
        for name, pattern in paths:
            value = request.match_info[name]
            if not pattern.fullmatch(value):
                raise ValidationFailed(f"{name} {value[:70]!r} is not valid")
        if queries:
            unknown = sorted(set(request.query) - queries)
            if unknown:
                raise ValidationFailed(
                    f"unknown query parameters {[u[:32] for u in unknown[:5]]}")
        return await route.handler(request)

    return checked


async def openapi_json(request: web.Request) -> web.Response:
    """GET /openapi.json: the listener's own part (http/openapi.py built it at start)."""
    return web.Response(text=request.app[OPENAPI_TEXT], content_type="application/json")


def register(app: web.Application, routes: Iterable[Route], listener: Listener,
             openapi_text: str) -> None:
    table: dict[tuple[str, str], Route] = {}
    for route in routes:
        if listener not in route.listeners:
            continue
        handler = _checked(route)
        if route.method == "get":
            app.router.add_get(route.path, handler)
        else:
            app.router.add_route(route.method.upper(), route.path, handler)
        table[(route.method.upper(), route.path)] = route
    app[ROUTES] = table
    app[OPENAPI_TEXT] = openapi_text


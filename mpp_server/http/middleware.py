"""What every wallet-API request goes through: metrics, error mapping, auth, parsing.
What each route allows is its declaration's (http/routing.py, http/routes.py)."""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Mapping
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from mpp_server import jsonutil
from mpp_server.config import Settings
from mpp_server.errors import Forbidden, Unauthorized, ValidationFailed, WalletError
from mpp_server.http.routing import Handler, Scope, route_name, route_of
from mpp_server.kaspi_client.models import LOCALES
from mpp_server.metrics import HTTP_LATENCY_BY, HTTP_REQUESTS_BY, UNDECLARED_ERRORS
from mpp_server.services import Services

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)



# What each listener's app keeps (both apps alike).
LISTENER: web.AppKey[str] = web.AppKey("listener", str)
SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
TOKENS: web.AppKey[Mapping[str, frozenset[Scope]]] = web.AppKey("tokens", dict)
_HTTP_CODES = {400: "VALIDATION_ERROR", 401: "UNAUTHORIZED", 403: "FORBIDDEN",
               404: "NOT_FOUND",
               405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE",
               415: "UNSUPPORTED_MEDIA_TYPE"}
def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(exclude_none=True), status=status,
                        content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             dumps=jsonutil.dumps)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = route_name(request)
        listener = request.app[LISTENER]
        HTTP_REQUESTS_BY(listener, request.method, route, str(status)).inc()
        HTTP_LATENCY_BY(listener, route).observe(time.perf_counter() - started)


@web.middleware
async def wallet_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes `{"error": {code, message}}`; never a stack trace."""
    try:
        return await handler(request)
    except WalletError as exc:
        route = route_of(request)
        if route is not None and not route.answers_error(exc):
            # The route's declaration (and so the OpenAPI description) does not list it.
            UNDECLARED_ERRORS.labels(route.operation_id, exc.code).inc()
            log.warning("an error the route does not declare",
                        extra={"route": route.operation_id, "code": exc.code})
        return error_response(exc.http_status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "HTTP_ERROR")
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("unhandled error", extra={"route": route_name(request)})
        return error_response(500, "INTERNAL_ERROR", "internal error; the request was logged")


def token_scopes(settings: Settings) -> dict[str, frozenset[Scope]]:
    """Every configured token with what it may do (a token in both lists may do both)."""
    scopes: dict[str, set[Scope]] = {}
    for token in settings.tokens:
        scopes.setdefault(token, set()).add(Scope.WALLET)
    for token in settings.deposit_tokens:
        scopes.setdefault(token, set()).add(Scope.DEPOSIT)
    return {token: frozenset(s) for token, s in scopes.items()}


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The token the route's declared scope needs (a 404 or 405 still needs a valid
    token of either kind, so a prober learns nothing)."""
    route = route_of(request)
    if route is not None and not route.scope.bearer:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token")
    # Our tokens are printable ASCII; aiohttp hands other header bytes over as lone
    # surrogates, which token.encode() refused with a 500 (issue 14).
    if not (token.isascii() and token.isprintable()):
        raise Unauthorized("invalid bearer token")
    # Compare against every token in constant time.
    granted: frozenset[Scope] = frozenset()
    for known, scopes in request.app[TOKENS].items():
        if hmac.compare_digest(token.encode(), known.encode()):
            granted = scopes
    if not granted:
        raise Unauthorized("invalid bearer token")
    if route is not None and route.scope not in granted:
        raise Forbidden(f"this token may not call this endpoint (it needs a token "
                        f"from {route.scope.upper()}_API_TOKENS)")
    return await handler(request)


def describe_validation(exc: ValidationError, limit: int = 5) -> str:
    """`field: why` for the first `limit` errors, as both listeners answer them."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


async def parse_body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    try:
        data = jsonutil.loads(raw)
    except jsonutil.JSONDecodeError as exc:
        raise ValidationFailed(str(exc)) from exc
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation(exc)) from exc


def locale_of(request: web.Request) -> str | None:
    locale = request.headers.get("X-Locale")
    if locale is None:
        return None
    if locale not in LOCALES:
        raise ValidationFailed("X-Locale must be ru-RU or kk-KZ")
    return locale


def query_int(request: web.Request, name: str, default: int | None, low: int,
              high: int) -> int | None:
    """A whole-number query parameter within [low, high] (plain digits: int() would take
    " +1_0 " too)."""
    text = request.query.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,18}", text) or not low <= int(text) <= high:
        raise ValidationFailed(f"{name} must be a whole number between {low} and {high}")
    return int(text)

"""The OpenAPI 3.1 description of the listeners, generated from the route declarations
(http/routes.py) and the pydantic models that validate the requests and shape the
answers (http/models.py).

Schemas are never written here: they come from the models (`models_json_schema`,
"validation" for requests, "serialization" for answers), and each route's error answers
from the errors it declares (http/routing.py Route.errors_answered, with each error's
meaning from mpp_server/errors.py), so the description cannot drift from what the server
checks and sends.

Each listener serves its own part at `GET /openapi.json` (relative server URL: the
host that served it). `python -m mpp_server openapi` (`make openapi`) prints one
document with every listener, the default addresses as servers, for docs/openapi.json
(docs/openapi.md says why one document).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from mpp_server import __version__, errors
from mpp_server.config import Settings
from mpp_server.http import unreadable
from mpp_server.http.examples import EVENT_EXAMPLES
from mpp_server.http.models import ErrorBody, ErrorOut, WebhookOut
from mpp_server.http.routes import ROUTES
from mpp_server.http.routing import Listener, Route, Scope

Which = Literal["wallet", "kaspi", "acquiring", "all"]
JSON = "application/json"
REF = "#/components/schemas/{model}"
# What each wallet-API error code means to the caller (errors.py is its one home).
_WHY = {cls.code: cls.why for cls in errors.WalletError.__subclasses__()}
_SERVERS: dict[Listener, tuple[str, str]] = {
    "wallet": ("wallet_listen", "wallet API (WALLET_LISTEN)"),
    "kaspi": ("kaspi_listen", "Kaspi-facing API (KASPI_LISTEN), over the IPSec tunnel"),
    "acquiring": ("acquiring_listen", "the card acquirers' callbacks (ACQUIRING_LISTEN)"),
}


# ---- building the document ---------------------------------------------------------


def _dump(example: Any) -> Any:
    if isinstance(example, BaseModel):
        return example.model_dump(mode="json", exclude_none=True)
    return example


def _examples(examples: Mapping[str, Any]) -> dict[str, Any]:
    return {name: {"value": _dump(value)} for name, value in examples.items()}


def _error_answers(route: Route) -> dict[int, dict[str, Any]]:
    by_status: dict[int, list[str]] = {}
    for code, status in route.errors_answered().items():
        by_status.setdefault(status, []).append(code)
    answers: dict[int, dict[str, Any]] = {}
    for status, codes in sorted(by_status.items()):
        lines = [f"- `{c}`: {_WHY.get(c, 'passed through from Kaspi')}" for c in codes]
        if status == 502:
            lines.append("- any other error code Kaspi answers, passed through")
        examples = {c: ErrorOut(error=ErrorBody(code=c, message=_WHY.get(c, "Kaspi's "
                                                "resultMessage"))) for c in codes}
        answers[status] = {
            "description": "`{\"error\": {code, message}}` with one of:\n" + "\n".join(lines),
            "content": {JSON: {"schema": {"$ref": REF.format(model="ErrorOut")},
                               "examples": _examples(examples)}},
            "x-error-codes": codes,
        }
    return answers


def _operation(route: Route, refs: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    """`refs`: (model, mode) -> {"$ref": ...}, as models_json_schema answers."""
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary,
                          "tags": [route.tag]}
    if route.description:
        op["description"] = route.description
    scheme = "depositAuth" if route.scope is Scope.DEPOSIT else "bearerAuth"
    op["security"] = [{scheme: []}] if route.scope.bearer else []
    if route.params:
        op["parameters"] = [{"name": p.name, "in": p.where, "required": p.required,
                             "description": p.description, "schema": dict(p.schema)}
                            for p in route.params]
    if route.request is not None:
        media: dict[str, Any] = {"schema": refs[(route.request, "validation")]}
        for example in route.request_examples.values():
            route.request.model_validate(example)  # an example the server refuses is a bug
        if route.request_examples:
            media["examples"] = _examples(route.request_examples)
        op["requestBody"] = {"required": True, "content": {JSON: media}}
    responses: dict[int, dict[str, Any]] = {}
    for status, answer in route.answers.items():
        schema = (refs[(answer.model, "serialization")] if answer.model is not None
                  else dict(answer.raw_schema or {}))
        content: dict[str, Any] = {"schema": schema}
        if answer.examples:
            content["examples"] = _examples(answer.examples)
        responses[status] = {"description": answer.description,
                             "content": {answer.media_type: content}}
    responses.update(_error_answers(route))
    op["responses"] = {str(status): responses[status] for status in sorted(responses)}
    return op


def _webhook(refs: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    """What the server POSTs to WEBHOOK_URL (docs/notices.md): OpenAPI 3.1's `webhooks`,
    so a generated client has the body's model too."""
    header = {"in": "header", "required": True, "schema": {"type": "string"}}
    return {"post": {
        "operationId": "eventWebhook", "tags": ["wallet"],
        "summary": "Each event of GET /v1/events, POSTed to WEBHOOK_URL (Standard Webhooks)",
        "description": "At least once, while the receiver does not answer 2xx: retried "
                       "(the first retry within 5 s, then doubling up to "
                       "WEBHOOK_BACKOFF_MAX_MS) until WEBHOOK_MAX_AGE_S, across restarts. "
                       "Verify the signature with any Standard Webhooks library and the "
                       "secret WEBHOOK_SECRET; drop a webhook-id seen before (a retry, or "
                       "the same event read from the feed).",
        "parameters": [
            {"name": "webhook-id", **header,
             "description": "the event's id (its `id` in the feed): the same on every retry"},
            {"name": "webhook-timestamp", **header,
             "description": "this attempt's time, Unix seconds"},
            {"name": "webhook-signature", **header,
             "description": "`v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}"
                            ".{body}`, keyed with WEBHOOK_SECRET's base64-decoded bytes (after "
                            "`whsec_`)"}],
        "requestBody": {"required": True, "content": {JSON: {
            "schema": refs[(WebhookOut, "serialization")],
            "examples": _examples({e.type: WebhookOut(type=e.type, timestamp=e.createdAt,
                                                      data=e) for e in EVENT_EXAMPLES})}}},
        "responses": {"2XX": {"description": "delivered: never sent again"},
                      "default": {"description": "anything else (or no answer within "
                                                 "WEBHOOK_TIMEOUT_MS): sent again later"}},
    }}


def _models(routes: Iterable[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(WebhookOut,
                                                                   "serialization"): None}
    for route in routes:
        if route.request is not None:
            wanted[(route.request, "validation")] = None
        for answer in route.answers.values():
            if answer.model is not None:
                wanted[(answer.model, "serialization")] = None
        if route.errors_answered():
            wanted[(ErrorOut, "serialization")] = None
    return list(wanted)


def _server(listener: Listener) -> list[dict[str, str]]:
    setting, description = _SERVERS[listener]
    return [{"url": f"http://{Settings.model_fields[setting].default}",
             "description": description}]


def _referenced(schemas: Mapping[str, Any], paths: Any) -> dict[str, Any]:
    """The schemas the paths (and webhooks) reach: pydantic also lists the enums whose
    schema a model replaced (http/models.py _enum_schema), which nothing references."""
    kept: dict[str, Any] = {}
    text = json.dumps(paths)
    while True:
        reached = {name: schema for name, schema in schemas.items()
                   if json.dumps(REF.format(model=name)) in text}
        if reached.keys() == kept.keys():
            return kept
        kept = reached
        text = json.dumps([paths, kept])


def build(which: Which = "all") -> dict[str, Any]:
    """The OpenAPI 3.1 document of one listener, or of both ("all", with servers)."""
    routes = [r for r in ROUTES if which == "all" or which in r.listeners]
    refs, defs = models_json_schema(_models(routes), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        item = paths.setdefault(route.path, {})
        item[route.method] = _operation(route, refs)
        if which == "all" and "wallet" not in route.listeners:
            item["servers"] = _server(route.listeners[0])
    webhooks = {"event": _webhook(refs)} if which in ("wallet", "all") else {}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": {"all": "mpp-server", "wallet": "mpp-server wallet API",
                      "kaspi": "mpp-server Kaspi-facing API",
                      "acquiring": "mpp-server acquirers' callbacks"}[which],
            "version": __version__,
            "description": "The server side of a wallet whose customers pay Kaspi Pay QR "
                           "codes (shared/spec/wallet-api.md). Amounts are strings in tenge "
                           "with two decimals (\"1500.00\"), timestamps ISO 8601 with "
                           "offset. Wallet API errors are `{\"error\": {code, message}}`; "
                           "the Kaspi-facing `/refund` always answers `{\"result\": "
                           "{resultCode, resultMessage}}`. On every path, in the "
                           "listener's form: a request line over "
                           f"{unreadable.MAX_REQUEST_LINE_BYTES} bytes is 414 "
                           "(URI_TOO_LONG), a header over "
                           f"{unreadable.MAX_HEADER_FIELD_BYTES} bytes or more than "
                           f"{unreadable.MAX_HEADERS} headers 431 (HEADERS_TOO_LARGE), "
                           "a request that is not HTTP/1.1 400 (VALIDATION_ERROR); Kaspi's "
                           "form says PARAM_ILLEGAL.",
        },
        "paths": paths,
        "components": {
            "schemas": _referenced(defs.get("$defs", {}), [paths, webhooks]),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http", "scheme": "bearer",
                    "description": "a token from WALLET_API_TOKENS (comma-separated, "
                                   "several for rotation); /v1 paths only"},
                "depositAuth": {
                    "type": "http", "scheme": "bearer",
                    "description": "a token from DEPOSIT_API_TOKENS (the core-banking "
                                   "side): the only tokens that may create money or set a "
                                   "customer's identification level"}},
        },
        "tags": [{"name": "wallet", "description": "the wallet's mobile backend calls these"},
                 {"name": "probes", "description": "no token: keep the listener private"},
                 {"name": "kaspi", "description": "Kaspi calls this over the IPSec tunnel"},
                 {"name": "acquiring", "description": "card acquirers call these (top-ups)"},
                 {"name": "back office", "description": "reconciliation against Kaspi's "
                                                        "registries"}],
    }
    if which == "all":
        doc["servers"] = _server("wallet")
    if webhooks:
        doc["webhooks"] = webhooks
    return doc


def render(document: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, indented, so `make openapi` output is deterministic."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server openapi",
        description="Print the OpenAPI 3.1 description (both listeners by default; "
                    "`make openapi` writes it to docs/openapi.json).")
    parser.add_argument("--listener", choices=("all", "wallet", "kaspi", "acquiring"),
                        default="all",
                        help="only one listener's part, as it serves at /openapi.json")
    args = parser.parse_args(argv)
    print(render(build(args.listener)), end="")
    return 0

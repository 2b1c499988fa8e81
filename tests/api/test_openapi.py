"""The OpenAPI description: valid 3.1, complete against the contract, committed as
generated, and served by both listeners."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from schemathesis.core.result import Ok

from mpp_server import errors
from mpp_server.http import openapi
from mpp_server.http.middleware import LISTENER, wallet_errors
from mpp_server.http.routes import ROUTES
from mpp_server.http.routing import OPENAPI_TEXT, Listener, Route, Scope, register
from mpp_server.metrics import REGISTRY, UNDECLARED_ERRORS
from tests.support.stack import Stack

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
# shared/spec/wallet-api.md: every path and method of the contract.
CONTRACT_OPERATIONS = {
    ("post", "/v1/accounts/{customerId}/deposits"), ("get", "/v1/accounts/{customerId}"),
    ("post", "/v1/scan"), ("post", "/v1/payments/{paymentId}/checkout"),
    ("post", "/v1/payments/{paymentId}/confirm"), ("post", "/v1/payments/{paymentId}/cancel"),
    ("get", "/v1/payments/{paymentId}"), ("get", "/v1/events"),
    ("get", "/v1/accounts/{customerId}/statement"),
    ("put", "/v1/accounts/{customerId}/identification"),
    ("get", "/metrics"), ("get", "/healthz"), ("get", "/readyz"), ("post", "/refund"),
    ("post", "/v1/disputes"), ("get", "/v1/disputes/{disputeId}"),
    ("post", "/v1/disputes/{disputeId}/withdraw"),
}
# The contract's and README's error codes with their HTTP status.
CONTRACT_CODES = {
    "VALIDATION_ERROR": 422, "UNAUTHORIZED": 401, "NOT_FOUND": 404, "INSUFFICIENT_FUNDS": 409,
    "PAYMENT_EXPIRED": 409, "INVALID_STATE": 409, "CUSTOMER_MISMATCH": 409,
    "IDEMPOTENCY_CONFLICT": 409, "KASPI_UNAVAILABLE": 503, "LIMIT_EXCEEDED": 409,
    "FORBIDDEN": 403,
    "INVALID_TOKEN": 422, "PARAM_ILLEGAL": 422, "CUSTOM_QR_ERROR": 422, "EXPIRED_CODE": 410,
    "PROCESS_FAIL": 409, "INVALID_MERCHANT": 409, "PAYMENTS_SUSPENDED": 409,
    "UNKNOWN_EXCEPTION": 502, "UNKNOWN_SOURCE": 502,
}
STATUSES = ["SCANNED", "CHECKED_OUT", "PENDING", "COMPLETED", "DECLINED", "CANCELLED", "EXPIRED",
            "FAILED"]


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, item in doc["paths"].items()
            for method, op in item.items() if method != "servers"}


@pytest.mark.parametrize("which", ["all", "wallet", "kaspi"])
def test_document_is_valid_openapi_3_1(which: openapi.Which) -> None:
    doc = openapi.build(which)
    assert doc["openapi"].startswith("3.1.")
    schema = schemathesis.openapi.from_dict(json.loads(openapi.render(doc)))
    schema.validate()  # the OpenAPI 3.1 meta-schema
    assert all(isinstance(result, Ok) for result in schema.get_all_operations())
    for name, component in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(component), name  # JSON Schema 2020-12


def test_every_contract_path_and_method_is_described() -> None:
    described = operations(openapi.build("all"))
    assert CONTRACT_OPERATIONS <= set(described)
    assert ("get", "/openapi.json") in described


def test_each_listener_describes_only_its_own_paths() -> None:
    wallet_paths = set(openapi.build("wallet")["paths"])
    kaspi_paths = set(openapi.build("kaspi")["paths"])
    assert kaspi_paths == {"/refund", "/openapi.json"}
    assert "/refund" not in wallet_paths and "/v1/scan" in wallet_paths


def test_every_contract_error_code_is_listed_with_its_status() -> None:
    listed: dict[str, set[int]] = {}
    for op in operations(openapi.build("all")).values():
        for status, answer in op["responses"].items():
            for code in answer.get("x-error-codes", ()):
                listed.setdefault(code, set()).add(int(status))
                assert code in answer["content"]["application/json"]["examples"]
    for code, status in CONTRACT_CODES.items():
        assert listed.get(code) == {status}, code


def test_error_answers_use_error_out_and_refund_answers_use_result() -> None:
    for (_, path), op in operations(openapi.build("all")).items():
        for status, answer in op["responses"].items():
            schema = answer["content"].get("application/json", {}).get("schema", {})
            if path == "/refund":
                assert schema == {"$ref": "#/components/schemas/RefundResultOut"}
            elif int(status) >= 400 and path.startswith("/v1/"):
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, status)
    refund = openapi.build("kaspi")["paths"]["/refund"]["post"]
    assert set(refund["responses"]) == {"200", "400", "403", "413", "500"}


def _server_scopes() -> dict[tuple[str, str], Scope]:
    """(method, path) -> the token scope the wallet listener's router requires."""
    app = web.Application()
    register(app, ROUTES, "wallet", "{}")
    assert app[OPENAPI_TEXT] == "{}"
    routes = {(r.method.upper(), r.path): r for r in ROUTES}
    return {(route.method.lower(), route.resource.canonical):
            routes[(route.method, route.resource.canonical)].scope
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"}


def test_security_is_bearer_on_v1_only_and_says_which_tokens() -> None:
    doc = openapi.build("all")
    for scheme in ("bearerAuth", "depositAuth"):
        assert doc["components"]["securitySchemes"][scheme] == {
            **doc["components"]["securitySchemes"][scheme], "type": "http",
            "scheme": "bearer"}
    scopes = _server_scopes()
    for (method, path), op in operations(doc).items():
        scheme = ("depositAuth" if scopes.get((method, path)) is Scope.DEPOSIT
                  else "bearerAuth")
        expected: list[dict[str, list[str]]] = [{scheme: []}] if path.startswith("/v1/") else []
        assert op["security"] == expected, path
        assert ("401" in op["responses"]) == path.startswith("/v1/"), path
        if path.startswith("/v1/"):
            assert "FORBIDDEN" in op["responses"]["403"]["x-error-codes"], path
    assert scopes[("post", "/v1/accounts/{customerId}/deposits")] is Scope.DEPOSIT


def test_every_call_that_reads_the_database_may_answer_database_unavailable() -> None:
    """Every /v1 call can meet the database away (docs/high-availability.md)."""
    for (_, path), op in operations(openapi.build("all")).items():
        if path.startswith("/v1/"):
            assert "DATABASE_UNAVAILABLE" in op["responses"]["503"]["x-error-codes"], path


def test_parameters_statuses_and_amounts_are_described() -> None:
    doc = openapi.build("all")
    ops = operations(doc)
    params = {p["name"]: p for p in ops[("post", "/v1/payments/{paymentId}/confirm")]
              ["parameters"]}
    assert params["paymentId"]["in"] == "path" and params["paymentId"]["schema"]["pattern"]
    assert params["X-Locale"]["schema"]["enum"] == ["ru-RU", "kk-KZ"]
    assert {p["name"] for p in ops[("get", "/v1/events")]["parameters"]} == {"after", "limit"}
    schemas = doc["components"]["schemas"]
    assert schemas["PaymentOut"]["properties"]["status"]["enum"] == STATUSES
    assert "1500.00" in json.dumps(schemas["PaymentOut"]["properties"]["amount"])
    refund_amount = schemas["RefundIn"]["properties"]["refundAmount"]
    assert {s["type"] for s in refund_amount["anyOf"]} == {"string", "number"}
    assert schemas["DepositIn"]["additionalProperties"] is False  # requests forbid extras
    assert "paymentId " in ops[("post", "/refund")]["description"]  # the trailing space
    assert doc["paths"]["/refund"]["servers"][0]["url"].endswith(":8081")
    assert doc["servers"][0]["url"].endswith(":8080")


def test_every_example_matches_its_schema() -> None:
    doc = openapi.build("all")
    checked = 0
    for (method, path), op in operations(doc).items():
        media = [op["requestBody"]["content"]["application/json"]] if "requestBody" in op else []
        media += [m for answer in op["responses"].values() for m in answer["content"].values()]
        for content in media:
            validator = jsonschema_rs.Draft202012Validator(
                {**content["schema"], "components": doc["components"]}, validate_formats=True)
            for name, example in content.get("examples", {}).items():
                assert validator.is_valid(example["value"]), (method, path, name)
                checked += 1
    assert checked > 40


def test_the_webhook_is_described_for_generated_clients() -> None:
    doc = openapi.build("wallet")
    hook = doc["webhooks"]["event"]["post"]
    assert {p["name"] for p in hook["parameters"]} == {
        "webhook-id", "webhook-timestamp", "webhook-signature"}
    content = hook["requestBody"]["content"]["application/json"]
    validator = jsonschema_rs.Draft202012Validator(
        {**content["schema"], "components": doc["components"]}, validate_formats=True)
    assert set(content["examples"]) == {"payment.completed", "refund.credited",
                                        "dispute.resolved"}
    for example in content["examples"].values():
        assert validator.is_valid(example["value"])
    assert "webhooks" not in openapi.build("kaspi")


def test_committed_document_is_what_the_code_generates() -> None:
    assert COMMITTED.read_text() == openapi.render(openapi.build("all")), (
        "docs/openapi.json is stale: run `make openapi` and commit it")


def test_cli_prints_the_combined_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert openapi.main([]) == 0
    assert capsys.readouterr().out == openapi.render(openapi.build("all"))


@pytest.mark.parametrize("listener", ["wallet", "kaspi"])
async def test_each_listener_serves_its_part_without_a_token(stack: Stack,
                                                            listener: Listener) -> None:
    url = stack.wallet_url if listener == "wallet" else stack.kaspi_url
    async with stack.http.get(url + "/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == openapi.build(listener)


async def test_an_error_the_route_does_not_declare_is_counted(
        aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
) -> None:
    """The guard behind the description: a handler that raises an error its route does
    not declare still answers it, and the server counts it (tests/conftest.py fails the
    session on any such count)."""
    async def lost(request: web.Request) -> web.Response:
        raise errors.NotFound("nothing here")

    route = Route(("wallet",), "get", "/v1/lost", lost, "lostThing", "a test route",
                  scope=Scope.PUBLIC, uses_database=False)
    app = web.Application(middlewares=[wallet_errors])
    app[LISTENER] = "wallet"
    register(app, [route], "wallet", "{}")
    before = REGISTRY.get_sample_value("mpp_http_undeclared_errors_total",
                                       {"operation": "lostThing", "code": "NOT_FOUND"}) or 0
    client = await aiohttp_client(app)
    resp = await client.get("/v1/lost")
    assert resp.status == 404
    assert REGISTRY.get_sample_value("mpp_http_undeclared_errors_total",
                                     {"operation": "lostThing", "code": "NOT_FOUND"}) == before + 1
    UNDECLARED_ERRORS.remove("lostThing", "NOT_FOUND")  # the session's guard: only real ones

"""Which layer may import which (docs/design.md, "The layout"): the money and the clients
never import the configuration, the wiring or the HTTP layer; nothing of the server
imports the dev tools."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mpp_server"

# The base modules any layer may use: no configuration, no wiring, no HTTP.
BASE = frozenset({"db", "errors", "logs", "metrics", "money", "jsonutil", "wire", "cursors",
                  "audit", "journal", "redact", "__version__"})
# layer -> the layers (beyond BASE and itself) it may import.
ALLOWED: dict[str, frozenset[str]] = {
    "kaspi_client": frozenset(),
    "acquirers": frozenset(),
    "domain": frozenset({"kaspi_client", "acquirers"}),
    "reconcile": frozenset({"domain", "kaspi_client", "config", "migrate"}),
    "http": frozenset({"domain", "kaspi_client", "acquirers", "reconcile", "config",
                       "services", "migrate"}),
    "ipsec": frozenset(),
    # We call the wallet backend: the feed's wire model is the webhook's body.
    "webhooks": frozenset({"domain", "http", "cli_support"}),
}


def _layer(module: str) -> str:
    """mpp_server.domain.payments -> domain; mpp_server.config -> config."""
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("mpp_server.")}


def _violations(layer: str, imported: set[str]) -> list[str]:
    allowed = ALLOWED.get(layer)  # None: the wiring and entry points, any server layer
    return sorted(name for name in imported
                  if _layer(name) == "devtools"
                  or (allowed is not None and _layer(name) not in BASE | allowed | {layer}))


def _server_modules() -> list[Path]:
    return [path for path in PACKAGE.rglob("*.py") if "devtools" not in path.parts]


@pytest.mark.parametrize("path", _server_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_the_layers_below_it(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    layer = relative.parts[0] if len(relative.parts) > 1 else relative.stem
    # (__main__ dispatches subcommands by name through importlib, devtools' among them.)
    assert _violations(layer, _imports(path)) == []


def test_the_rule_catches_a_domain_module_reading_the_settings() -> None:
    assert _violations("domain", {"mpp_server.config"}) == ["mpp_server.config"]
    assert _violations("domain", {"mpp_server.services"}) == ["mpp_server.services"]
    assert _violations("domain", {"mpp_server.http.routes"}) == ["mpp_server.http.routes"]
    assert _violations("serve", {"mpp_server.devtools.stack"}) == [
        "mpp_server.devtools.stack"]
    assert _violations("domain", {"mpp_server.domain.ledger", "mpp_server.db"}) == []
    assert _violations("http", {"mpp_server.config", "mpp_server.domain"}) == []

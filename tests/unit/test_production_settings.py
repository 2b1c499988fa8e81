"""Production settings have no working defaults (issue 21): a gateway whose endpoint is a
production one needs its credentials set explicitly, and `serve` stops at start, naming
the missing variable, before it listens or touches the database."""

from __future__ import annotations

import os
import subprocess
import sys

import pydantic
import pytest

from mpp_server.config import REQUIRED_WITH_ENDPOINT, Settings, describe_settings_error

HALYK_PRODUCTION = "https://epay-api.homebank.kz"


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not any(k.startswith(p) for p in ("HALYK_", "KAPITAL_", "KASPI_"))}
    return {**env, **values}


def test_a_production_endpoint_without_its_secret_stops_serve() -> None:
    env = _env(HALYK_EPAY_BASE_URL=HALYK_PRODUCTION, HALYK_EPAY_CLIENT_ID="merchant",
               HALYK_EPAY_TERMINAL="t-1", DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    done = subprocess.run([sys.executable, "-m", "mpp_server", "serve"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "HALYK_EPAY_CLIENT_SECRET must be set" in done.stderr
    assert "epay-api.homebank.kz" in done.stderr


@pytest.mark.parametrize("endpoint", sorted(REQUIRED_WITH_ENDPOINT))
def test_each_production_endpoint_requires_each_credential(
        endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith(("HALYK_", "KAPITAL_", "KASPI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv(endpoint.upper(), "https://gateway.example.kz/api")
    for missing in REQUIRED_WITH_ENDPOINT[endpoint]:
        for name in REQUIRED_WITH_ENDPOINT[endpoint]:
            if name != missing:
                monkeypatch.setenv(name.upper(), "OPERATOR")
        monkeypatch.delenv(missing.upper(), raising=False)
        with pytest.raises(pydantic.ValidationError) as refused:
            Settings()
        assert describe_settings_error(refused.value).startswith(
            f"{missing.upper()} must be set"), describe_settings_error(refused.value)
        monkeypatch.setenv(missing.upper(), "OPERATOR")
    assert getattr(Settings(), endpoint) == "https://gateway.example.kz/api"


def test_the_simulator_on_loopback_needs_nothing_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith(("HALYK_", "KAPITAL_", "KASPI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KASPI_BASE_URL", "http://localhost:8090")
    monkeypatch.setenv("HALYK_EPAY_BASE_URL", "http://[::1]:8090/halyk-epay")
    assert Settings().kaspi_caller_name == "MPPSERVER"

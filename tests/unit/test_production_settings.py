"""Production settings have no working defaults (issue 21): a gateway whose endpoint is a
production one needs its credentials set explicitly, and `serve` stops at start, naming
the missing variable, before it listens or touches the database. A variable a newer wire
withdrew (issue 23) stops it too, naming its replacement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from mpp_server.config import (
    REQUIRED_WITH_ENDPOINT,
    WITHDRAWN,
    AnyOf,
    Settings,
    describe_settings_error,
)

HALYK_PRODUCTION = "https://epay-api.homebank.kz"
_OURS = ("HALYK_", "KAPITAL_", "KASPI_")


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return {**env, **values}


def _serve(**values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpp_server", "serve"],
                          env=_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/x", **values),
                          capture_output=True, text=True, timeout=60)


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith(_OURS):
            monkeypatch.delenv(name)


def test_a_production_endpoint_without_its_secret_stops_serve() -> None:
    done = _serve(HALYK_EPAY_API_URL=HALYK_PRODUCTION, HALYK_EPAY_CLIENT_ID="merchant",
                  HALYK_EPAY_TERMINAL="t-1")
    assert done.returncode == 2, done.stderr
    assert "HALYK_EPAY_CLIENT_SECRET must be set" in done.stderr
    assert "epay-api.homebank.kz" in done.stderr


@pytest.mark.parametrize("withdrawn", sorted(WITHDRAWN))
def test_a_withdrawn_variable_stops_serve_naming_its_replacement(withdrawn: str) -> None:
    done = _serve(**{withdrawn.upper(): "http://127.0.0.1:8090/anything"})
    assert done.returncode == 2, done.stderr
    assert f"{withdrawn.upper()} is withdrawn" in done.stderr
    assert WITHDRAWN[withdrawn].split(" ")[0] in done.stderr


def _names(required: str | AnyOf) -> tuple[str, ...]:
    """What to set for one requirement: the name, or an AnyOf's first group."""
    return (required,) if isinstance(required, str) else required.groups[0]


@pytest.mark.parametrize("endpoint", sorted(REQUIRED_WITH_ENDPOINT))
def test_each_production_endpoint_requires_each_credential(
        endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv(endpoint.upper(), "https://gateway.example.kz/api")
    requirements = REQUIRED_WITH_ENDPOINT[endpoint]
    for missing in requirements:
        for other in requirements:
            for name in _names(other):
                monkeypatch.setenv(name.upper(), "OPERATOR")
        for name in _names(missing):
            monkeypatch.delenv(name.upper(), raising=False)
        with pytest.raises(pydantic.ValidationError) as refused:
            Settings()
        named = missing.describe() if isinstance(missing, AnyOf) else missing.upper()
        assert describe_settings_error(refused.value).startswith(f"{named} must be set"), \
            describe_settings_error(refused.value)
        for name in _names(missing):
            monkeypatch.setenv(name.upper(), "OPERATOR")
    assert getattr(Settings(), endpoint) == "https://gateway.example.kz/api"


def test_kaspi_takes_an_api_key_or_a_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("KASPI_ECOM_BASE_URL", "https://qrapi-cert-ip.kaspi.kz/r2/v01")
    monkeypatch.setenv("KASPI_ECOM_TRADEPOINT_ID", "1001")
    monkeypatch.setenv("KASPI_ECOM_CERT_FILE", "/etc/mpp/kaspi.crt")
    with pytest.raises(pydantic.ValidationError):
        Settings()  # a certificate without its key
    monkeypatch.setenv("KASPI_ECOM_KEY_FILE", "/etc/mpp/kaspi.key")
    assert Settings().kaspi_ecom_api_key == ""


def test_the_simulator_on_loopback_needs_nothing_set(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("KASPI_BASE_URL", "http://localhost:8090")
    monkeypatch.setenv("HALYK_EPAY_API_URL", "http://[::1]:8090/halyk-epay/api")
    assert Settings().kaspi_caller_name == "MPPSERVER"


def test_a_certificate_file_that_cannot_be_read_stops_serve(tmp_path: Path) -> None:
    done = _serve(KAPITAL_CERT_FILE=str(tmp_path / "missing.crt"),
                  KAPITAL_KEY_FILE=str(tmp_path / "missing.key"))
    assert done.returncode == 2, done.stderr
    assert "KAPITAL_CERT_FILE" in done.stderr and "Traceback" not in done.stderr

"""Settings: every default in one place. Names are the contract's environment variables."""

from __future__ import annotations

import ipaddress
from functools import cached_property

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mpp_server.domain.limits import DEFAULT_LIMITS_MCI, DEFAULT_MCI_TENGE, Limits, parse_limits


def parse_listen(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:8080`)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _token_set(value: str) -> frozenset[str]:
    return frozenset(t.strip() for t in value.split(",") if t.strip())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str = "postgresql://mpp@127.0.0.1:54329/postgres"
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=20, ge=1, le=500)
    # Count every statement in mpp_db_queries_total (the benchmark's round-trip figure).
    db_query_metrics: bool = False

    kaspi_base_url: str = "http://127.0.0.1:8090"
    kaspi_caller_name: str = Field(default="MPPSERVER", min_length=1, max_length=12)
    kaspi_timeout_ms: int = Field(default=3000, ge=50, le=60_000)

    wallet_api_tokens: str = ""
    # The core-banking side's tokens: the only ones that may set a customer's
    # identification level (shared/spec/wallet-api.md); none by default.
    deposit_api_tokens: str = ""
    kaspi_allowed_networks: str = "127.0.0.0/8"

    wallet_listen: str = "127.0.0.1:8080"
    kaspi_listen: str = "127.0.0.1:8081"
    simulator_listen: str = "127.0.0.1:8090"

    # How long confirm/cancel wait for Kaspi's answer before answering PENDING.
    confirm_budget_ms: int = Field(default=5000, ge=0, le=60_000)
    # Do not debit when less than this remains before canConfirmUntil: notifyPayment
    # must *start* before it (regulation §4.1), and the debit itself takes time.
    confirm_safety_margin_ms: int = Field(default=1000, ge=0, le=60_000)
    # notifyPayment retry policy (capped exponential backoff, never gives up).
    notify_backoff_initial_ms: int = Field(default=200, ge=10)
    notify_backoff_max_ms: int = Field(default=30_000, ge=100)
    notify_worker_concurrency: int = Field(default=8, ge=1, le=256)
    notify_poll_interval_ms: int = Field(default=500, ge=10)
    # How often gauges read from the database (outbox depth, oldest PENDING) refresh.
    gauges_refresh_ms: int = Field(default=5000, ge=100)

    # E-money limits by identification level (mpp_server/domain/limits.py): the tenge
    # value of one MCI for the year, and the limits in MCI as JSON by level.
    mci_tenge: int = Field(default=DEFAULT_MCI_TENGE, ge=1, le=10_000_000)
    limits_mci: str = DEFAULT_LIMITS_MCI
    # Top-ups by card (docs/topups.md): the acquirers (each defaults to the simulator's),
    # the callback listener and how acquirers reach it, the status poller, the refunds.
    halyk_epay_base_url: str = "http://127.0.0.1:8090/halyk-epay"
    halyk_epay_client_id: str = "mpp-test"
    halyk_epay_client_secret: str = "mpp-test-secret"
    halyk_epay_terminal: str = "67e34d63-102f-4bd1-898e-370781d0074d"
    kapital_base_url: str = "http://127.0.0.1:8090/kapital"
    kapital_merchant_id: str = "MPPTEST"
    kaspi_ecom_base_url: str = "http://127.0.0.1:8090/kaspi-ecom"
    kaspi_ecom_token: str = "mpp-test-token"
    acquiring_listen: str = "127.0.0.1:8082"
    # Unset: http://ACQUIRING_LISTEN (right for the simulator; set it in production).
    acquiring_public_url: str = ""
    acquirer_timeout_ms: int = Field(default=5000, ge=50, le=60_000)
    # How long each acquirer's payment page takes payment (Kapital: 15-20 minutes);
    # past it a top-up gets one last status check, then EXPIRED.
    halyk_epay_session_s: int = Field(default=1800, ge=1, le=86_400)
    kapital_session_s: int = Field(default=1200, ge=1, le=86_400)
    kaspi_ecom_session_s: int = Field(default=1800, ge=1, le=86_400)
    # The first status check without a callback (the contract: within 30 s), then
    # doubling up to the cap, until the session is over.
    topup_first_check_ms: int = Field(default=20_000, ge=10, le=30_000)
    topup_check_backoff_max_ms: int = Field(default=120_000, ge=100)
    topup_poll_interval_ms: int = Field(default=1000, ge=10)
    topup_worker_concurrency: int = Field(default=8, ge=1, le=256)
    topup_refund_backoff_initial_ms: int = Field(default=500, ge=10)
    topup_refund_backoff_max_ms: int = Field(default=60_000, ge=100)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: str = "INFO"

    @field_validator("kaspi_caller_name")
    @classmethod
    def _caller_name_ascii(cls, value: str) -> str:
        if not value.isascii() or not value.isprintable():
            raise ValueError("KASPI_CALLER_NAME must be printable ASCII")
        return value

    @field_validator("kaspi_allowed_networks")
    @classmethod
    def _networks_valid(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        return value

    @model_validator(mode="after")
    def _limits_valid(self) -> Settings:
        parse_limits(self.limits_mci, self.mci_tenge)  # a bad LIMITS_MCI stops the start
        return self

    @cached_property
    def limits(self) -> Limits:
        return parse_limits(self.limits_mci, self.mci_tenge)

    @cached_property
    def acquiring_url(self) -> str:
        """Where acquirers send callbacks (ACQUIRING_PUBLIC_URL, else the listener)."""
        return (self.acquiring_public_url or f"http://{self.acquiring_listen}").rstrip("/")

    @cached_property
    def tokens(self) -> frozenset[str]:
        return _token_set(self.wallet_api_tokens)

    @cached_property
    def deposit_tokens(self) -> frozenset[str]:
        return _token_set(self.deposit_api_tokens)

    @cached_property
    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(p.strip(), strict=False)
                     for p in self.kaspi_allowed_networks.split(",") if p.strip())

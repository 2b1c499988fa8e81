"""Settings: every default in one place. Names are the contract's environment variables."""

from __future__ import annotations

import ipaddress
from functools import cached_property

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def parse_listen(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:8080`)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str = "postgresql://mpp@127.0.0.1:54329/postgres"
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=20, ge=1, le=500)
    # The database going away (docs/high-availability.md): the longest wait for a pooled
    # connection (connecting included, retried while a failover finds a primary), and for
    # one statement (asyncpg's command_timeout: it covers a stalled server, which a
    # server-side statement_timeout cannot). Past either the wallet call answers 503
    # DATABASE_UNAVAILABLE. A statement may wait on a row lock that the notify worker
    # holds across one Kaspi call: keep it above KASPI_TIMEOUT_MS.
    db_acquire_timeout_ms: int = Field(default=2000, ge=10, le=60_000)
    db_statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)
    # Count every statement in mpp_db_queries_total (the benchmark's round-trip figure).
    db_query_metrics: bool = False

    kaspi_base_url: str = "http://127.0.0.1:8090"
    kaspi_caller_name: str = Field(default="MPPSERVER", min_length=1, max_length=12)
    kaspi_timeout_ms: int = Field(default=3000, ge=50, le=60_000)

    wallet_api_tokens: str = ""
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

    @cached_property
    def tokens(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.wallet_api_tokens.split(",") if t.strip())

    @cached_property
    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(p.strip(), strict=False)
                     for p in self.kaspi_allowed_networks.split(",") if p.strip())

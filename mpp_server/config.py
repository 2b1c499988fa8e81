"""Settings: every default in one place. Names are the contract's environment variables."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from functools import cached_property
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mpp_server.domain.limits import DEFAULT_LIMITS_MCI, DEFAULT_MCI_TENGE, Limits, parse_limits
from mpp_server.money import parse_amount

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The private PostgreSQL of `make run` / `make test` (devtools/devdb.py) and the database
# `make run` keeps the books in: without DATABASE_URL every command uses that database.
DEVDB_DEFAULT_PORT = 54329
DEV_DATABASE = "mpp"
# The integration checklist keeps every exchange at least this long
# (EXCHANGE_RETENTION_DAYS, EVENTS_RETENTION_DAYS; retention_maintain refuses less too).
MIN_RETENTION_DAYS = 30
DEFAULT_RETENTION_DAYS = 90


def dev_database_url() -> str:
    """DATABASE_URL's default: `make run`'s database on the private PostgreSQL, on
    MPP_DEVDB_PORT when set (a second checkout's cluster)."""
    port = os.environ.get("MPP_DEVDB_PORT", "").strip() or str(DEVDB_DEFAULT_PORT)
    return f"postgresql://mpp@127.0.0.1:{port}/{DEV_DATABASE}"


def parse_networks(value: str) -> tuple[Network, ...]:
    """KASPI_ALLOWED_NETWORKS, strictly: a CIDR with host bits set (`10.1.2.3/0`) is
    refused, not widened to its network (that one was everyone), and so is anything
    that is not a CIDR or an address."""
    networks = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=True))
        except ValueError as exc:
            raise ValueError(f"KASPI_ALLOWED_NETWORKS: {part[:64]!r} is not a network "
                             f"({exc})") from exc
    return tuple(networks)


def parse_listen(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:8080`)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


# Production settings have no working defaults (issue 21): the credentials that go with an
# endpoint must be set explicitly once that endpoint is a production one, i.e. not a
# loopback address, where only the simulator (or a developer's proxy) listens. A
# forgotten secret then stops `serve` at start, naming the variable, instead of failing
# at the first customer's payment. `make run` and the tests get the simulator's values
# from the launcher (mpp_server/devtools), never from these defaults.
REQUIRED_WITH_ENDPOINT: dict[str, tuple[str, ...]] = {
    "kaspi_base_url": ("kaspi_caller_name",),
    "halyk_epay_base_url": ("halyk_epay_client_id", "halyk_epay_client_secret",
                            "halyk_epay_terminal"),
    "kapital_base_url": ("kapital_merchant_id",),
    "kaspi_ecom_base_url": ("kaspi_ecom_token",),
}


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Standard Webhooks' secrets are 24 to 64 random bytes; fewer is a guessable key.
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_MIN_BYTES = 24


def parse_webhook_secret(value: str) -> bytes:
    """WEBHOOK_SECRET's key: `whsec_` + base64 (strict: no stray characters; padding
    optional) of at least WEBHOOK_SECRET_MIN_BYTES bytes."""
    if not value.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(f"WEBHOOK_SECRET must start with {WEBHOOK_SECRET_PREFIX!r}")
    encoded = value.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        # Padding may be left off (the reference verifier adds it too).
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("WEBHOOK_SECRET: what follows whsec_ is not base64") from exc
    if len(key) < WEBHOOK_SECRET_MIN_BYTES:
        raise ValueError(f"WEBHOOK_SECRET must hold at least {WEBHOOK_SECRET_MIN_BYTES} "
                         f"bytes (it holds {len(key)})")
    return key


def parse_webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("WEBHOOK_URL must be an http:// or https:// URL with a host")
    return value


def _token_set(value: str) -> frozenset[str]:
    return frozenset(t.strip() for t in value.split(",") if t.strip())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str = Field(default_factory=dev_database_url)
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=20, ge=1, le=500)
    # The database going away (docs/high-availability.md): the longest wait for a pooled
    # connection (connecting included, retried while a failover finds a primary), and for
    # one statement (asyncpg's command_timeout: it covers a stalled server, which a
    # server-side statement_timeout cannot). Past either the wallet call answers 503
    # DATABASE_UNAVAILABLE.
    db_acquire_timeout_ms: int = Field(default=2000, ge=10, le=60_000)
    db_statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)
    # Count every statement in mpp_db_queries_total (the benchmark's round-trip figure).
    db_query_metrics: bool = False

    kaspi_base_url: str = "http://127.0.0.1:8090"
    kaspi_caller_name: str = Field(default="MPPSERVER", min_length=1, max_length=12)
    kaspi_timeout_ms: int = Field(default=3000, ge=50, le=60_000)

    wallet_api_tokens: str = ""
    # The core-banking side's tokens: the only ones that may create money (deposits) or
    # set a customer's identity (http/middleware.py, deposit_tokens_only).
    deposit_api_tokens: str = ""
    # The most one deposit may credit, in tenge ("1000000.00"); more is 422.
    deposit_max_amount: str = "1000000.00"
    kaspi_allowed_networks: str = "127.0.0.0/8"

    wallet_listen: str = "127.0.0.1:8080"
    kaspi_listen: str = "127.0.0.1:8081"
    # The operators' console (mpp_server/console/), and how browsers reach it: an
    # https:// address (the bank's reverse proxy terminating TLS) makes its cookie Secure.
    admin_listen: str = "127.0.0.1:8083"
    admin_public_url: str = ""

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
    # The event feed holds a committed event back while an older transaction of ours
    # that writes events is still open (so the feed follows id order), never longer
    # than this after the event's transaction began (domain/events.py).
    events_hold_ms: int = Field(default=2000, ge=0, le=60_000)

    # Webhooks to the wallet backend (docs/notices.md): unset URL, none are sent (the
    # event feed still works). The secret is Standard Webhooks' `whsec_` + base64.
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_timeout_ms: int = Field(default=5000, ge=100, le=60_000)
    # Retries: the first within 5 s (the contract), then doubling up to the cap.
    webhook_backoff_initial_ms: int = Field(default=2000, ge=10, le=5000)
    webhook_backoff_max_ms: int = Field(default=600_000, ge=100, le=86_400_000)
    # Past this (from the event) a delivery is given up: counted, alerted, replayable.
    webhook_max_age_s: int = Field(default=3 * 86_400, ge=1, le=30 * 86_400)
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    webhook_poll_interval_ms: int = Field(default=100, ge=10, le=60_000)
    # Disputes are answered within this many hours of being opened (dueAt).
    dispute_response_hours: int = Field(default=24, ge=1, le=24 * 90)
    # Records (docs/operations.md, "Records, retention and roles"): how long the exchange
    # journal and the inbound request log are kept, and the published events. At least
    # 30 days: the integration checklist keeps every exchange that long.
    exchange_retention_days: int = DEFAULT_RETENTION_DAYS
    events_retention_days: int = DEFAULT_RETENTION_DAYS

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
        parse_networks(value)
        return value

    @field_validator("exchange_retention_days", "events_retention_days")
    @classmethod
    def _retention_at_least_30_days(cls, value: int, info: ValidationInfo) -> int:
        if value < MIN_RETENTION_DAYS:
            raise ValueError(f"{(info.field_name or '').upper()} must be at least "
                             f"{MIN_RETENTION_DAYS} days, got {value}")
        return value

    @field_validator("deposit_max_amount")
    @classmethod
    def _deposit_max_valid(cls, value: str) -> str:
        if parse_amount(value) <= 0:
            raise ValueError("DEPOSIT_MAX_AMOUNT must be positive")
        return value

    @model_validator(mode="after")
    def _production_credentials_set(self) -> Settings:
        for endpoint, credentials in REQUIRED_WITH_ENDPOINT.items():
            url = getattr(self, endpoint)
            if is_loopback_url(url):
                continue
            for name in credentials:
                if name not in self.model_fields_set or not getattr(self, name):
                    raise ValueError(f"{name.upper()} must be set: {endpoint.upper()} is a "
                                     f"production endpoint ({urlsplit(url).hostname})")
        return self

    @model_validator(mode="after")
    def _webhook_configured(self) -> Settings:
        if self.webhook_url:
            parse_webhook_url(self.webhook_url)
            if not self.webhook_secret:
                raise ValueError("WEBHOOK_SECRET must be set: WEBHOOK_URL is set")
        if self.webhook_secret:
            parse_webhook_secret(self.webhook_secret)
        return self

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
    def deposit_max_tiyn(self) -> int:
        return parse_amount(self.deposit_max_amount)

    @cached_property
    def allowed_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.kaspi_allowed_networks)


def describe_settings_error(exc: ValidationError) -> str:
    """Each refused setting as `VARIABLE: why`, named as the environment names it."""
    parts = []
    for err in exc.errors(include_url=False):
        name = ".".join(str(p) for p in err["loc"]).upper()
        why = str(err["msg"]).removeprefix("Value error, ")
        # A rule across settings names its variables itself (no loc).
        parts.append(why if not name or why.startswith(name) else f"{name}: {why}")
    return "; ".join(parts)

"""The simulator's settings: every default in one place, read from the environment."""

from __future__ import annotations

import re
from datetime import timedelta, timezone
from decimal import Decimal
from functools import cached_property

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_OFFSET_RE = re.compile(r"^([+-])(\d{2}):?(\d{2})?$")
# The X-Caller-Name the simulator accepts unless SIM_CALLER_NAMES says otherwise, and the
# one the dev launcher gives the server (devtools/launcher.py).
CALLER_NAME = "MPPSERVER"


def parse_offset(value: str) -> timezone:
    """`+05:00`, `+0500` or `+05` as a fixed-offset time zone."""
    match = _OFFSET_RE.match(value.strip())
    if not match:
        raise ValueError(f"time zone must be an offset like +05:00, got {value!r}")
    sign = -1 if match.group(1) == "-" else 1
    hours, minutes = int(match.group(2)), int(match.group(3) or 0)
    if hours > 14 or minutes > 59:
        raise ValueError(f"time zone offset out of range: {value!r}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    simulator_listen: str = "127.0.0.1:8090"
    # Accepted X-Caller-Name values (comma-separated); anything else is UNKNOWN_SOURCE.
    sim_caller_names: str = CALLER_NAME
    # Where Kaspi calls the MPP's refund method (regulation §4.4).
    sim_mpp_refund_url: str = "http://127.0.0.1:8081/refund"
    # The registry's fee, percent of the amount (§5); refunds carry no fee.
    sim_fee_percent: Decimal = Field(default=Decimal("0.95"), ge=0, le=100)
    # Lifetime of a QR code and of a payment's confirmation window.
    sim_default_ttl_seconds: float = Field(default=300, gt=0, le=86_400 * 366)
    # Kazakhstan has had one time zone, UTC+5, since 2024-03-01.
    sim_registry_tz: str = "+05:00"
    # Outbound refund calls: per-attempt timeout, total bound, capped backoff.
    sim_refund_attempt_timeout_ms: int = Field(default=5000, ge=10, le=120_000)
    sim_refund_total_timeout_ms: int = Field(default=60_000, ge=10, le=3_600_000)
    sim_refund_backoff_initial_ms: int = Field(default=50, ge=1, le=60_000)
    sim_refund_backoff_max_ms: int = Field(default=1000, ge=1, le=60_000)
    # Memory bound: payments (and refund QR codes) kept in memory before new ones are
    # refused; POST /sim/reset empties the state.
    sim_max_payments: int = Field(default=2_000_000, ge=1)
    sim_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # One JSON line per request on stderr; off by default (the benchmark's rate).
    sim_access_log: bool = False
    # Digits mixed into every generated id so ids stay unique across restarts (the
    # MPP's database outlives the simulator); random when unset.
    sim_id_seed: int | None = Field(default=None, ge=0, le=999_999)

    @field_validator("sim_registry_tz")
    @classmethod
    def _tz_valid(cls, value: str) -> str:
        parse_offset(value)
        return value

    @field_validator("sim_caller_names")
    @classmethod
    def _callers_valid(cls, value: str) -> str:
        if not any(name.strip() for name in value.split(",")):
            raise ValueError("SIM_CALLER_NAMES must name at least one caller")
        return value

    @field_validator("sim_mpp_refund_url")
    @classmethod
    def _url_valid(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("SIM_MPP_REFUND_URL must be an http(s) URL")
        return value

    @cached_property
    def caller_names(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.sim_caller_names.split(",") if n.strip())

    @cached_property
    def registry_tz(self) -> timezone:
        return parse_offset(self.sim_registry_tz)

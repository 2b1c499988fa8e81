"""The wiring: the objects one server process shares between its listeners and
workers, built by serve.Runtime and handed to the domain's payment functions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import asyncpg

from mpp_server.config import Settings, parse_webhook_secret
from mpp_server.domain.outbox import NotifyOutbox
from mpp_server.domain.payments import PaymentSteps
from mpp_server.journal import Journal
from mpp_server.kaspi_client.client import KaspiClient
from mpp_server.webhooks.sender import Policy


@dataclass
class Services:
    pool: asyncpg.Pool
    kaspi: KaspiClient
    settings: Settings
    outbox: NotifyOutbox
    journal: Journal

    @cached_property
    def payments(self) -> PaymentSteps:
        s = self.settings
        return PaymentSteps(self.pool, self.kaspi, self.outbox, s.confirm_budget_ms,
                            s.confirm_safety_margin_ms, s.limits)


def webhook_policy(s: Settings) -> Policy:
    """The webhook sender's settings (WEBHOOK_*), in seconds, the key decoded."""
    return Policy(s.webhook_url, parse_webhook_secret(s.webhook_secret),
                  s.webhook_timeout_ms / 1000, s.webhook_backoff_initial_ms / 1000,
                  s.webhook_backoff_max_ms / 1000, float(s.webhook_max_age_s),
                  s.webhook_concurrency, s.webhook_poll_interval_ms / 1000,
                  s.gauges_refresh_ms / 1000)

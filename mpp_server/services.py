"""The wiring: the objects one server process shares between its listeners and
workers, built by serve.Runtime and handed to the domain's payment functions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import asyncpg

from mpp_server.config import Settings
from mpp_server.domain.outbox import NotifyOutbox
from mpp_server.domain.payments import PaymentSteps
from mpp_server.journal import Journal
from mpp_server.kaspi_client.client import KaspiClient


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

"""The top-ups' wiring (docs/topups.md): one client per acquirer, the top-ups with their
status poller, the refund outbox; built by serve.Runtime from the settings."""

from __future__ import annotations

import aiohttp
import asyncpg

from mpp_server.acquirers.base import Acquirer, Provider
from mpp_server.acquirers.halyk_epay import HalykEpay
from mpp_server.acquirers.kapital import Kapital
from mpp_server.acquirers.kaspi_ecom import KaspiEcom
from mpp_server.config import Settings
from mpp_server.domain.topup_refunds import TopupRefunds
from mpp_server.domain.topups import Policy, Topups
from mpp_server.http.topups import TopupServices
from mpp_server.journal import Journal


def acquirers(s: Settings, session: aiohttp.ClientSession,
              journal: Journal) -> dict[Provider, Acquirer]:
    return {
        Provider.HALYK_EPAY: HalykEpay(session, s.halyk_epay_base_url, s.halyk_epay_client_id,
                                       s.halyk_epay_client_secret, s.halyk_epay_terminal,
                                       s.acquirer_timeout_ms, journal),
        Provider.KAPITAL: Kapital(session, s.kapital_base_url, s.kapital_merchant_id,
                                  s.acquirer_timeout_ms, journal),
        Provider.KASPI_ECOM: KaspiEcom(session, s.kaspi_ecom_base_url, s.kaspi_ecom_token,
                                       s.acquirer_timeout_ms, journal),
    }


def build(s: Settings, pool: asyncpg.Pool, session: aiohttp.ClientSession,
          journal: Journal) -> TopupServices:
    clients = acquirers(s, session, journal)
    policy = Policy(
        first_check_s=s.topup_first_check_ms / 1000,
        max_backoff_s=s.topup_check_backoff_max_ms / 1000,
        session_s={Provider.HALYK_EPAY: s.halyk_epay_session_s,
                   Provider.KAPITAL: s.kapital_session_s,
                   Provider.KASPI_ECOM: s.kaspi_ecom_session_s},
        poll_interval_s=s.topup_poll_interval_ms / 1000,
        concurrency=s.topup_worker_concurrency)
    return TopupServices(
        Topups(pool, clients, s.acquiring_url, policy, s.limits),
        TopupRefunds(pool, clients, initial_backoff_s=s.topup_refund_backoff_initial_ms / 1000,
                     max_backoff_s=s.topup_refund_backoff_max_ms / 1000,
                     concurrency=s.topup_worker_concurrency,
                     poll_interval_s=s.topup_poll_interval_ms / 1000,
                     # The request's own attempt starts right after staging: its lease.
                     lease_s=s.acquirer_timeout_ms / 1000),
        journal)

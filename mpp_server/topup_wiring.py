"""The top-ups' wiring (docs/topups.md): one client per acquirer, the top-ups with their
status poller, the refund outbox; built by serve.Runtime from the settings."""

from __future__ import annotations

import ssl

import aiohttp
import asyncpg

from mpp_server.acquirers.base import Acquirer, Provider, tls_context
from mpp_server.acquirers.halyk_epay import HalykEpay
from mpp_server.acquirers.kapital import Kapital
from mpp_server.acquirers.kaspi_ecom import KaspiEcom
from mpp_server.config import Settings
from mpp_server.domain.acquirer_devices import DeviceRegistry
from mpp_server.domain.topup_refunds import TopupRefunds
from mpp_server.domain.topups import Policy, Topups
from mpp_server.http.topups import TopupServices
from mpp_server.journal import Journal


def tls_contexts(s: Settings) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """Kapital's and Kaspi's TLS contexts (client certificates, CAs): TlsFilesUnreadable
    names the variables of a file that cannot be read (serve checks before it starts)."""
    return (tls_context("KAPITAL_CERT_FILE, KAPITAL_KEY_FILE, KAPITAL_CA_FILE",
                        s.kapital_cert_file, s.kapital_key_file, s.kapital_ca_file),
            tls_context("KASPI_ECOM_CERT_FILE, KASPI_ECOM_KEY_FILE, KASPI_ECOM_CA_FILE",
                        s.kaspi_ecom_cert_file, s.kaspi_ecom_key_file, s.kaspi_ecom_ca_file))


def acquirers(s: Settings, session: aiohttp.ClientSession, pool: asyncpg.Pool,
              journal: Journal) -> dict[Provider, Acquirer]:
    """The three clients, each recording its calls in the exchange journal."""
    kapital_tls, kaspi_tls = tls_contexts(s)
    kaspi_device = DeviceRegistry(pool, Provider.KASPI_ECOM, s.kaspi_ecom_tradepoint_id,
                                  s.acquirer_lease_s)
    return {
        Provider.HALYK_EPAY: HalykEpay(session, s.halyk_epay_oauth_url, s.halyk_epay_api_url,
                                       s.halyk_epay_widget_url, s.halyk_epay_client_id,
                                       s.halyk_epay_client_secret, s.halyk_epay_terminal,
                                       s.acquirer_timeout_ms, journal),
        Provider.KAPITAL: Kapital(session, s.kapital_exec_url, s.kapital_merchant_id,
                                  s.kapital_currency, kapital_tls, s.acquirer_timeout_ms,
                                  journal),
        Provider.KASPI_ECOM: KaspiEcom(session, s.kaspi_ecom_base_url, s.kaspi_ecom_api_key,
                                       kaspi_tls, s.kaspi_ecom_tradepoint_id, kaspi_device,
                                       s.acquirer_timeout_ms, journal),
    }


def build(s: Settings, pool: asyncpg.Pool, session: aiohttp.ClientSession,
          journal: Journal) -> TopupServices:
    clients = acquirers(s, session, pool, journal)
    policy = Policy(
        first_check_s=s.topup_first_check_ms / 1000,
        max_backoff_s=s.topup_check_backoff_max_ms / 1000,
        session_s={Provider.HALYK_EPAY: s.halyk_epay_session_s,
                   Provider.KAPITAL: s.kapital_session_s,
                   Provider.KASPI_ECOM: s.kaspi_ecom_session_s},
        poll_interval_s=s.topup_poll_interval_ms / 1000,
        concurrency=s.topup_worker_concurrency, lease_s=s.acquirer_lease_s,
        watch_s=float(s.topup_late_watch_s), callback_concurrency=s.topup_callback_concurrency,
        callback_queue=s.topup_callback_queue)
    return TopupServices(
        Topups(pool, clients, s.acquiring_url, policy, s.limits, journal),
        TopupRefunds(pool, clients, initial_backoff_s=s.topup_refund_backoff_initial_ms / 1000,
                     max_backoff_s=s.topup_refund_backoff_max_ms / 1000,
                     concurrency=s.topup_worker_concurrency,
                     poll_interval_s=s.topup_poll_interval_ms / 1000,
                     lease_s=s.acquirer_lease_s, settle_s=s.topup_refund_settle_ms / 1000),
        clients)

"""Every variable by which the server reaches the simulator's fake card acquirers (and the
simulator's own for its mutual-TLS listener), in one function each: `make run`, `make ha`
and the tests take them from here. The server's Settings are production's and hold no
simulator credentials (docs/topups.md, "Configuration")."""

from __future__ import annotations

from pathlib import Path

from mpp_server.devtools import testcerts
from mpp_server.devtools.simulator.acquirers import halyk_epay, kapital, kaspi_ecom

# Any client id will do for the fake Halyk; the secret and the terminal are its own.
HALYK_EPAY_CLIENT_ID = "mpp-test"


def simulator_certificates(folder: Path) -> testcerts.TestCertificates:
    """The simulator's TLS certificate and the merchant's client certificate (the CN is
    the fake Kapital's merchant id), made in `folder` unless still valid there."""
    return testcerts.make(folder, kapital.MERCHANT_ID)


def simulator_acquirer_env(sim_url: str, sim_tls_url: str,
                           certs: testcerts.TestCertificates) -> dict[str, str]:
    """The server's: the three fake gateways at the simulator's plain (`sim_url`) and TLS
    (`sim_tls_url`) listeners, with the credentials they accept."""
    return {
        "HALYK_EPAY_OAUTH_URL": sim_url + halyk_epay.OAUTH,
        "HALYK_EPAY_API_URL": sim_url + halyk_epay.API,
        "HALYK_EPAY_WIDGET_URL": sim_url + halyk_epay.WIDGET,
        "HALYK_EPAY_CLIENT_ID": HALYK_EPAY_CLIENT_ID,
        "HALYK_EPAY_CLIENT_SECRET": halyk_epay.CLIENT_SECRET,
        "HALYK_EPAY_TERMINAL": halyk_epay.TERMINAL,
        "KAPITAL_EXEC_URL": sim_tls_url + kapital.EXEC,
        "KAPITAL_CERT_FILE": str(certs.client_cert), "KAPITAL_KEY_FILE": str(certs.client_key),
        "KAPITAL_CA_FILE": str(certs.ca_file), "KAPITAL_MERCHANT_ID": kapital.MERCHANT_ID,
        # The fake merchant is enabled for tenge, as the bank must enable ours.
        "KAPITAL_CURRENCY": "398",
        "KASPI_ECOM_BASE_URL": sim_url + kaspi_ecom.BASE + "/r1/v01",
        "KASPI_ECOM_API_KEY": kaspi_ecom.API_KEY,
        "KASPI_ECOM_CERT_FILE": "", "KASPI_ECOM_KEY_FILE": "", "KASPI_ECOM_CA_FILE": "",
        "KASPI_ECOM_TRADEPOINT_ID": kaspi_ecom.TRADE_POINT_ID,
    }


def simulator_tls_env(listen: str, certs: testcerts.TestCertificates) -> dict[str, str]:
    """The simulator's: where its TLS listener listens, its certificate, and the CA its
    callers' client certificates must be signed by."""
    return {"SIM_TLS_LISTEN": listen, "SIM_TLS_CERT_FILE": str(certs.server_cert),
            "SIM_TLS_KEY_FILE": str(certs.server_key),
            "SIM_TLS_CLIENT_CA_FILE": str(certs.ca_file)}

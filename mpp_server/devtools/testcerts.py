"""Test certificates for the simulator's mutual-TLS gateways (Kapital's TWPG, Kaspi's QR
API r2): a throw-away CA, the simulator's server certificate (127.0.0.1, localhost) and
the merchant's client certificate (CN = the merchant id), made with the openssl command
line (.ci/run installs it) when a test session or `make run` starts. Never a real bank's
certificate: the bank issues those at certification (docs/topups.md)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# Short-lived on purpose; `make run` makes new ones when they are about to expire.
DAYS = 30
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class TestCertificates:
    __test__ = False  # not a pytest class

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()[:500]}")


def _issue(folder: Path, name: str, subject: str, extensions: str) -> None:
    """A key and a certificate signed by the folder's CA."""
    ext = folder / f"{name}.ext"
    ext.write_text(extensions + "\n")
    _openssl("req", *_KEY, "-keyout", str(folder / f"{name}.key"),
             "-out", str(folder / f"{name}.csr"), "-subj", subject)
    _openssl("x509", "-req", "-in", str(folder / f"{name}.csr"), "-CA", str(folder / "ca.crt"),
             "-CAkey", str(folder / "ca.key"), "-CAcreateserial", "-days", str(DAYS),
             "-extfile", str(ext), "-out", str(folder / f"{name}.crt"))


def still_valid(certs: TestCertificates, seconds: int = 86_400) -> bool:
    """Every file there, and no certificate expiring within `seconds`."""
    paths = (certs.ca_file, certs.server_cert, certs.server_key, certs.client_cert,
             certs.client_key)
    if not all(p.exists() for p in paths):
        return False
    return all(subprocess.run(["openssl", "x509", "-checkend", str(seconds), "-noout",
                               "-in", str(p)], capture_output=True, timeout=60).returncode == 0
               for p in (certs.ca_file, certs.server_cert, certs.client_cert))


def make(folder: Path, merchant_id: str) -> TestCertificates:
    """The CA, the server's and the client's certificates in `folder` (kept if still
    valid for a day: `make run` reuses them)."""
    folder.mkdir(parents=True, exist_ok=True)
    certs = TestCertificates(folder / "ca.crt", folder / "server.crt", folder / "server.key",
                             folder / "client.crt", folder / "client.key")
    if still_valid(certs):
        return certs
    _openssl("req", "-x509", *_KEY, "-keyout", str(folder / "ca.key"),
             "-out", str(certs.ca_file), "-days", str(DAYS),
             "-subj", "/CN=mpp-server simulator test CA (not a bank's)")
    _issue(folder, "server", "/CN=127.0.0.1",
           "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    _issue(folder, "client", f"/CN={merchant_id}", "extendedKeyUsage=clientAuth")
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    return certs

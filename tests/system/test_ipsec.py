"""A real IPSec tunnel between two network namespaces, configured by `ipsec render`.

The MPP side loads exactly what an operator would deploy (the rendered swanctl.conf and its
secrets file); the Kaspi side is a mirror image written here. Then the Kaspi simulator, in
Kaspi's namespace, and the server, in the MPP's, complete a payment and a refund through the
tunnel's inner addresses. Every address is a documentation range inside the namespaces.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import pytest

from mpp_server.devtools.launcher import Listeners, simulator_process_env
from tests.support import ipsec_harness as lab
from tests.support.ipsec_harness import Side
from tests.support.stack import server_env

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
# Where `mpp_server devdb` keeps the private cluster, whose Unix socket lives in its data dir.
PG_SOCKET_DIR = REPO / os.environ.get("MPP_DEVDB_DIR", ".data/pg")

IKE_SA_PROPOSAL = "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256"
ESP_FIRST_PROPOSAL = "AES_CBC-256/HMAC_SHA2_256_128"  # keyed from the IKE SA: no DH group
ESP_PFS_PROPOSAL = "AES_CBC-256/HMAC_SHA2_256_128/ECP_256"
# What Kaspi's charon logs (cfg level 2) for what the MPP offers: exactly one proposal each.
OFFERED_IKE = "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256"
OFFERED_ESP = {"ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ",
               "ESP:AES_CBC_256/HMAC_SHA2_256_128/ECP_256/NO_EXT_SEQ"}

pytestmark = pytest.mark.slow


@dataclass
class Tunnel:
    mpp: Side
    kaspi: Side
    folder: Path
    psk: str

    def logs(self) -> str:
        return (f"--- MPP charon ---\n{self.mpp.charon.log_tail()}\n"
                f"--- Kaspi charon ---\n{self.kaspi.charon.log_tail()}")

    def wait(self, what: str, probe: Callable[[], T | None], timeout_s: float) -> T:
        try:
            return lab.wait_for(what, probe, timeout_s)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{self.logs()}")


def _skip(reason: str) -> NoReturn:
    print(f"\nSKIPPED {reason}")
    pytest.skip(reason)


def render_mpp_conf(folder: Path, psk: str) -> Path:
    """The project's own config, rendered by the real command line."""
    psk_file = folder / "psk.txt"
    psk_file.write_text(f"{psk}\n")
    out = folder / "mpp" / "swanctl.conf"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "mpp_server", "ipsec", "render",
         "--local-addr", lab.MPP_OUTER, "--remote-addr", lab.KASPI_OUTER,
         "--local-ts", f"{lab.MPP_INNER}/32", "--remote-ts", f"{lab.KASPI_INNER}/32",
         "--local-id", lab.MPP_ID, "--remote-id", lab.KASPI_ID,
         "--psk-file", str(psk_file), "--out", str(out)],
        check=True, cwd=REPO, capture_output=True, text=True, timeout=30)
    return out


@pytest.fixture(scope="module")
def tunnel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tunnel]:
    reason = lab.missing_prerequisite()
    if reason is not None:
        _skip(reason)
    folder = tmp_path_factory.mktemp("ipsec")
    psk = secrets.token_urlsafe(24)
    with lab.lab(folder) as (mpp, kaspi):
        conf = render_mpp_conf(folder, psk)
        kaspi.charon.load(lab.write_kaspi_conf(folder / "kaspi" / "swanctl.conf", psk,
                                               "aes256-sha256-prfsha256-ecp256"))
        # start_action = start: loading the rendered config is what brings the tunnel up.
        mpp.charon.load(conf)
        yield Tunnel(mpp, kaspi, folder, psk)


def _establish_afresh(tunnel: Tunnel) -> None:
    tunnel.mpp.charon.swanctl("--terminate", "--ike", lab.CONN, "--timeout", "10", check=False)
    tunnel.wait("the old IKE SA to go", lambda: True if not tunnel.mpp.charon.list_sas()
                else None, 10)
    tunnel.mpp.charon.swanctl("--initiate", "--child", lab.CONN, "--timeout", "15",
                              check=False)


def _received_proposals(side: Side, kind: str) -> list[str]:
    text = side.charon.log.read_text(errors="replace")
    return re.findall(rf"received proposals: ({kind}:.*)$", text, flags=re.MULTILINE)


def test_rendered_config_establishes_with_the_regulation_proposals(tunnel: Tunnel) -> None:
    # Established afresh: another test may have rekeyed the CHILD SA (PFS) or taken the
    # tunnel down and up again before this one (the tests run in any order).
    _establish_afresh(tunnel)
    ike = tunnel.wait("the IKE SA and its CHILD SA", tunnel.mpp.charon.established, 15)

    assert ike.proposal == IKE_SA_PROPOSAL
    child = next(c for c in ike.children if c.state == "INSTALLED")
    assert child.proposal == ESP_FIRST_PROPOSAL
    # §1.10 lifetimes are hard limits: rekeying starts before 86400 s, the CHILD dies by 28800.
    assert ike.rekey_in_s is not None and 0 < ike.rekey_in_s <= 82800
    assert child.expires_in_s is not None and 0 < child.expires_in_s <= 28800
    kaspi_view = tunnel.wait("Kaspi's view", tunnel.kaspi.charon.established, 5)
    assert kaspi_view.proposal == IKE_SA_PROPOSAL
    # What went over the wire: the regulation's proposal alone, no weaker fallback offered.
    assert set(_received_proposals(tunnel.kaspi, "IKE")) == {OFFERED_IKE}
    assert set(_received_proposals(tunnel.kaspi, "ESP")) <= OFFERED_ESP


def test_forced_child_rekey_negotiates_pfs_group_19(tunnel: Tunnel) -> None:
    ike = tunnel.wait("the tunnel", tunnel.mpp.charon.established, 15)
    before = {child.uniqueid for child in ike.children}

    tunnel.mpp.charon.swanctl("--rekey", "--child", lab.CONN)

    def rekeyed() -> lab.ChildSa | None:
        for sa in tunnel.mpp.charon.list_sas():
            for child in sa.children:
                if child.uniqueid not in before and child.state == "INSTALLED":
                    return child
        return None

    child = tunnel.wait("the rekeyed CHILD SA", rekeyed, 15)
    assert child.proposal == ESP_PFS_PROPOSAL
    assert child.expires_in_s is not None and child.expires_in_s <= 28800
    assert set(_received_proposals(tunnel.kaspi, "ESP")) <= OFFERED_ESP
    assert "ESP:AES_CBC_256/HMAC_SHA2_256_128/ECP_256/NO_EXT_SEQ" in _received_proposals(
        tunnel.kaspi, "ESP")


# ---- a payment and a refund through the tunnel ---------------------------------------------

WALLET = "127.0.0.1:8080"  # inside the MPP namespace: only the test reaches it
KASPI_FACING = f"{lab.MPP_INNER}:8081"
SIMULATOR = f"{lab.KASPI_INNER}:8090"
TOKEN = "ipsec-test-token"
DEPOSIT_TOKEN = "ipsec-test-deposit-token"


def _namespaced_dsn(database_url: str) -> str | None:
    """The test database over PostgreSQL's Unix socket, which crosses network namespaces."""
    parts = urlsplit(database_url)
    port = parts.port or 5432
    if not (PG_SOCKET_DIR / f".s.PGSQL.{port}").exists():
        return None
    return f"postgresql://{parts.username or 'mpp'}@{parts.path}?host={PG_SOCKET_DIR}&port={port}"


def _wait_http_ready(tunnel: Tunnel, proc: subprocess.Popen[bytes], log: Path, netns: str,
                     host_port: str, path: str) -> None:
    def ready() -> bool | None:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited {proc.returncode}:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        try:
            status, _ = lab.http_json(netns, "GET", host_port, path, timeout_s=2)
        except (OSError, ValueError):
            return None
        return True if status < 500 else None

    tunnel.wait(f"{host_port}{path} in {netns}", ready, 30)


def _call(netns: str, method: str, host_port: str, path: str,
          body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    status, answer = lab.http_json(netns, method, host_port, path, body, token)
    assert 200 <= status < 300, f"{method} {path} -> {status} {answer}"
    return answer


def test_payment_and_refund_cross_the_tunnel(tunnel: Tunnel,
                                             request: pytest.FixtureRequest) -> None:
    database_url: str = request.getfixturevalue("isolated_db")
    dsn = _namespaced_dsn(database_url)
    if dsn is None:
        _skip(f"DATABASE_URL is not the private cluster (no Unix socket in {PG_SOCKET_DIR}): "
              "a namespaced server cannot reach it")
    ike = tunnel.wait("the tunnel", tunnel.mpp.charon.established, 15)
    esp_bytes_before = sum(child.bytes_out + child.bytes_in for child in ike.children)

    python = [sys.executable, "-m", "mpp_server"]
    sim_log, server_log = tunnel.folder / "simulator.log", tunnel.folder / "server.log"
    simulator = lab.spawn_in_netns(
        tunnel.kaspi.netns, simulator_process_env(SIMULATOR, f"http://{KASPI_FACING}/refund"),
        [*python, "simulator"], sim_log)
    # The Kaspi-facing listener binds to the MPP's inner address, reached only through ESP,
    # and admits only Kaspi's inner network.
    env = server_env(dsn, f"http://{SIMULATOR}",
                     Listeners(WALLET, KASPI_FACING, "127.0.0.1:0", "127.0.0.1:0"))
    env |= {"WALLET_API_TOKENS": TOKEN, "DEPOSIT_API_TOKENS": DEPOSIT_TOKEN,
            "KASPI_ALLOWED_NETWORKS": f"{lab.KASPI_INNER}/32"}
    server = lab.spawn_in_netns(tunnel.mpp.netns, env, [*python, "serve"], server_log)
    try:
        _wait_http_ready(tunnel, simulator, sim_log, tunnel.kaspi.netns, SIMULATOR,
                         "/sim/payments/none")
        _wait_http_ready(tunnel, server, server_log, tunnel.mpp.netns, WALLET, "/readyz")
        _pay_and_refund(tunnel.mpp.netns, tunnel.kaspi.netns)
    finally:
        lab.stop_process(server)
        lab.stop_process(simulator)

    ike = tunnel.wait("the tunnel", tunnel.mpp.charon.established, 5)
    esp_bytes_after = sum(child.bytes_out + child.bytes_in for child in ike.children)
    assert esp_bytes_after > esp_bytes_before, "no traffic went through the ESP SA"


def _pay_and_refund(mpp_ns: str, kaspi_ns: str) -> None:
    customer = f"ips{uuid.uuid4().hex[:9]}"  # ≤ 12 characters (Kaspi's limit)
    wallet = TOKEN
    _call(mpp_ns, "POST", WALLET, f"/v1/accounts/{customer}/deposits",
          {"depositId": f"dep-{customer}", "amount": "5000.00"}, token=DEPOSIT_TOKEN)

    qr = _call(kaspi_ns, "POST", SIMULATOR, "/sim/qr", {"type": "Dynamic", "amount": "100.00"})
    scan = _call(mpp_ns, "POST", WALLET, "/v1/scan",
                 {"qrCode": qr["qrCode"], "customerId": customer}, token=wallet)
    payment_id = scan["payment"]["paymentId"]
    assert scan["payment"]["amount"] == "100.00"
    confirm = _call(mpp_ns, "POST", WALLET, f"/v1/payments/{payment_id}/confirm",
                    {"customerId": customer}, token=wallet)
    assert confirm["status"] == "COMPLETED"
    assert _call(mpp_ns, "GET", WALLET, f"/v1/accounts/{customer}", token=wallet)[
        "balance"] == "4900.00"

    # Kaspi -> MPP: the simulator calls the server's /refund on its inner address.
    refund = _call(kaspi_ns, "POST", SIMULATOR, "/sim/refunds",
                   {"paymentId": qr["paymentId"], "amount": "40.00"})
    assert refund["resultCode"] == "SUCCESS"
    payment = _call(mpp_ns, "GET", WALLET, f"/v1/payments/{payment_id}", token=wallet)
    assert payment["status"] == "COMPLETED"
    assert payment["refundedAmount"] == "40.00"
    assert [r["amount"] for r in payment["refunds"]] == ["40.00"]
    assert _call(mpp_ns, "GET", WALLET, f"/v1/accounts/{customer}", token=wallet)[
        "balance"] == "4940.00"
    # Kaspi's books agree: notifyPayment and the refund answer both crossed the tunnel.
    at_kaspi = _call(kaspi_ns, "GET", SIMULATOR, f"/sim/payments/{qr['paymentId']}")
    assert (at_kaspi["status"], at_kaspi["customerId"], at_kaspi["refundedAmount"]) == (
        "COMPLETED", customer, "40.00")


# ---- the tunnel taken down, then brought back for the other tests --------------------------

def test_kaspi_offering_only_modp2048_is_refused(tunnel: Tunnel) -> None:
    try:
        _refused_against_modp2048(tunnel)
    finally:
        # Kaspi's own proposal again and the tunnel up: the tests run in any order.
        tunnel.kaspi.charon.load(tunnel.folder / "kaspi" / "swanctl.conf")
        tunnel.mpp.charon.swanctl("--initiate", "--child", lab.CONN, "--timeout", "15",
                                  check=False)
    tunnel.wait("the tunnel again", tunnel.mpp.charon.established, 15)


def _refused_against_modp2048(tunnel: Tunnel) -> None:
    tunnel.kaspi.charon.load(lab.write_kaspi_conf(
        tunnel.folder / "kaspi" / "modp2048.conf", tunnel.psk,
        "aes256-sha256-prfsha256-modp2048"))
    tunnel.mpp.charon.swanctl("--terminate", "--ike", lab.CONN, "--timeout", "10", check=False)
    tunnel.wait("the old IKE SA to go", lambda: True if not tunnel.mpp.charon.list_sas()
                else None, 10)

    attempt = tunnel.mpp.charon.swanctl("--initiate", "--child", lab.CONN, "--timeout", "15",
                                        check=False)

    assert attempt.returncode != 0, f"established against MODP-2048:\n{attempt.stdout}"
    assert "NO_PROPOSAL_CHOSEN" in attempt.stdout + attempt.stderr, tunnel.logs()
    for side in (tunnel.mpp, tunnel.kaspi):
        assert not [sa for sa in side.charon.list_sas() if sa.state == "ESTABLISHED"]
    # Kaspi saw the MPP offer ECP-256 only, never a MODP fallback.
    assert set(_received_proposals(tunnel.kaspi, "IKE")) == {OFFERED_IKE}

"""Who may reach the Kaspi-facing listener: KASPI_ALLOWED_NETWORKS is strict (a network
with host bits or garbage stops the server), and an IPv4-mapped peer on a dual-stack
socket is matched against the IPv4 networks."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from mpp_server import db
from mpp_server.devtools.launcher import Listeners, free_port
from tests.support.helpers import (
    new_customer,
)
from tests.support.stack import Stack, running_stack, server_env


async def refund_at(stack: Stack, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with stack.http.post(url + "/refund", json=body) as resp:
        return resp.status, await resp.json(content_type=None)



@pytest.mark.parametrize("networks", ["10.1.2.3/0", "127.0.0.0/8,not-a-network",
                                      "10.0.0.0/33", "::1/129"])
def test_allowed_networks_with_host_bits_or_garbage_stop_the_server(networks: str) -> None:
    # The database is unreachable on purpose: the server must stop before it tries it.
    env = {**os.environ, **server_env(f"postgresql://mpp@127.0.0.1:{free_port()}/none",
                                      "http://127.0.0.1:9", Listeners.free()),
           "KASPI_ALLOWED_NETWORKS": networks}
    done = subprocess.run([sys.executable, "-m", "mpp_server", "serve"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "KASPI_ALLOWED_NETWORKS" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


async def test_ipv4_mapped_peer_is_matched_against_ipv4_networks(isolated_db: str) -> None:
    # A dual-stack listener: an IPv4 peer arrives as ::ffff:127.0.0.1. A database of its
    # own: a second server's workers on the session's database would notify the session
    # stack's pending payments to this test's simulator, which never heard of them.
    pool = await db.create_pool(isolated_db, min_size=1, max_size=2)
    try:
        async with running_stack(isolated_db, pool,
                                 KASPI_LISTEN=f"[::ffff:127.0.0.1]:{free_port()}") as stack:
            assert "[::ffff:127.0.0.1]" in stack.kaspi_url
            status, body = await refund_at(stack, stack.kaspi_url, {
                "customerId": new_customer(), "paymentId": "mapped-unknown",
                "refundAmount": "1.00", "refundId": "mapped-" + new_customer(),
                "linkReceipt": "https://receipt"})
    finally:
        await pool.close()
    # Allowed in: a business answer (an unknown payment), not 403.
    assert status == 200, body
    assert body["result"]["resultCode"] == "PARAM_ILLEGAL"
    assert body["result"]["resultMessage"] == "unknown paymentId"



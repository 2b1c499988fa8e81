"""Container healthcheck: exit 0 when a listener answers, 1 otherwise (slim has no curl).

    python healthcheck.py                       GET /healthz on WALLET_LISTEN (the server)
    python healthcheck.py --tcp SIMULATOR_LISTEN  a TCP connect to that listener

Reads the listener's address from the same environment variable the process binds to,
so the check follows the configuration instead of repeating a port number.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request

TIMEOUT_S = 3.0
# A wildcard bind address is reached through loopback from inside the container.
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def _address(env_var: str, default: str) -> tuple[str, int]:
    host, _, port = os.environ.get(env_var, default).rpartition(":")
    host = host.strip("[]")
    return WILDCARDS.get(host, host), int(port)


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["--tcp"] and len(argv) == 2:
            with socket.create_connection(_address(argv[1], "0.0.0.0:8090"), TIMEOUT_S):
                return 0
        if argv:
            print(__doc__, file=sys.stderr)
            return 2
        host, port = _address("WALLET_LISTEN", "0.0.0.0:8080")
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # urlopen raises for any status >= 400, so reaching the return means 2xx/3xx.
        with urllib.request.urlopen(f"http://{netloc}/healthz", timeout=TIMEOUT_S):
            return 0
    except (OSError, ValueError) as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

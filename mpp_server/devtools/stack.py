"""`make run` / `python -m mpp_server stack`: the whole stack on one machine.

A private PostgreSQL (unless DATABASE_URL is set), the migrations, the Kaspi simulator
and the server, in the foreground until Ctrl-C, which stops everything it started.
The private PostgreSQL is stopped on exit if this run started it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from mpp_server import migrate
from mpp_server.config import DEV_DATABASE
from mpp_server.devtools import devdb
from mpp_server.devtools.launcher import (
    LaunchError,
    Listeners,
    Processes,
    Tokens,
    server_env,
    simulator_listen,
    simulator_process_env,
)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _private_database() -> tuple[str, Path | None]:
    """make run's database on the private PostgreSQL, and the cluster's folder when this
    run started it (so that Ctrl-C stops it)."""
    data_dir, port = devdb.configured()
    started = None if devdb.is_running(data_dir) else data_dir
    admin = devdb.ensure_postgres(data_dir, port)
    dsn = asyncio.run(devdb.ensure_database(admin, DEV_DATABASE))
    print(f"stack: private PostgreSQL on 127.0.0.1:{port} (MPP_DEVDB_PORT), database "
          f"{DEV_DATABASE!r} (data in {data_dir}); commands run without DATABASE_URL "
          f"find it")
    return dsn, started


def _tokens(env: Mapping[str, str]) -> Tokens:
    """The caller's tokens, or new ones for this run (printed)."""
    new = Tokens.new("dev")
    tokens = Tokens(env.get("WALLET_API_TOKENS") or new.wallet,
                    env.get("DEPOSIT_API_TOKENS") or new.deposit)
    if tokens.wallet == new.wallet:
        print(f"stack: WALLET_API_TOKENS was unset; this run's token: {tokens.wallet}")
    if tokens.deposit == new.deposit:
        # Deposits create money: they take only these tokens, never a wallet token.
        print(f"stack: DEPOSIT_API_TOKENS was unset; this run's deposit token: "
              f"{tokens.deposit}")
    return tokens


def _run(procs: Processes, listeners: Listeners, sim_env: dict[str, str],
         serve_env: dict[str, str]) -> int:
    procs.start_simulator(sim_env)
    procs.start_server("server", serve_env)
    procs.wait_http("simulator", f"http://{sim_env['SIMULATOR_LISTEN']}/sim/healthz")
    procs.wait_http("server", listeners.wallet_url + "/readyz")
    print(f"stack: ready. wallet API {listeners.wallet_url}, Kaspi-facing "
          f"{listeners.kaspi_url}, simulator http://{sim_env['SIMULATOR_LISTEN']}, "
          f"Kaspi at {serve_env['KASPI_BASE_URL']}, operators' console "
          f"http://{listeners.admin} (a first operator: python -m mpp_server operators add "
          "LOGIN --role admin). Ctrl-C stops.")
    while procs.first_exited() is None:
        time.sleep(0.5)
    print("stack: a process exited; stopping the others", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server stack",
        description="Start PostgreSQL (private, unless DATABASE_URL is set), apply the "
                    "migrations, start the Kaspi simulator and the server; Ctrl-C stops all.")
    parser.parse_args(argv)
    # What the caller set wins over the launcher's values (a real Kaspi's KASPI_BASE_URL,
    # say: the simulator still starts, the server talks to the given Kaspi).
    own = {name: value for name, value in os.environ.items() if value}
    started_postgres: Path | None = None
    dsn = own.get("DATABASE_URL")
    if not dsn:
        dsn, started_postgres = _private_database()
    try:
        applied = asyncio.run(migrate.migrate(dsn))
    except migrate.MigrationChanged as exc:
        raise SystemExit(f"stack: migrate refused: {exc}") from exc
    print(f"stack: migrations applied: {applied.migrations or 'none pending'}"
          f"{'; functions applied' if applied.functions else ''}")
    listeners = Listeners.configured(own)
    sim_listen = simulator_listen(own)
    serve_env = {**server_env(dsn, f"http://{sim_listen}", listeners, _tokens(own)), **own}
    sim_env = {**simulator_process_env(sim_listen, listeners.kaspi_url + "/refund",
                                       serve_env["KASPI_CALLER_NAME"]),
               **{k: v for k, v in own.items() if k.startswith("SIM")}}
    procs = Processes()
    # Installed explicitly: a shell that starts us in the background ignores SIGINT.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(procs, listeners, sim_env, serve_env)
    except LaunchError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstack: stopping")
        return 0
    finally:
        procs.stop()
        if started_postgres is not None:
            # Ctrl-C stops everything this run started; a cluster that was already
            # running (make test's, say) is left as it was.
            devdb.stop_postgres(started_postgres)
            print("stack: private PostgreSQL stopped")

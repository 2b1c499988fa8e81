"""`make run` / `python -m mpp_server stack`: the whole stack on one machine.

A private PostgreSQL (unless DATABASE_URL is set), the migrations, the Kaspi simulator
and the server, in the foreground until Ctrl-C, which stops everything it started.
The private PostgreSQL is stopped on exit if this run started it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from mpp_server import migrate
from mpp_server.config import DEV_DATABASE, Settings
from mpp_server.devtools import devdb

APP_DATABASE = DEV_DATABASE


async def _ensure_database(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(admin_dsn)._replace(path="/" + name))


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout_s} s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server stack",
        description="Start PostgreSQL (private, unless DATABASE_URL is set), apply the "
                    "migrations, start the Kaspi simulator and the server; Ctrl-C stops all.")
    parser.parse_args(argv)
    env = dict(os.environ)
    started_postgres: Path | None = None
    if not env.get("DATABASE_URL"):
        data_dir = Path(env.get("MPP_DEVDB_DIR", ".data/pg"))
        if not devdb.is_running(data_dir):
            started_postgres = data_dir
        port = int(env.get("MPP_DEVDB_PORT") or devdb.DEFAULT_PORT)
        admin = devdb.ensure_postgres(data_dir, port)
        env["DATABASE_URL"] = asyncio.run(_ensure_database(admin, APP_DATABASE))
        print(f"stack: private PostgreSQL on 127.0.0.1:{port} (MPP_DEVDB_PORT), database "
              f"{APP_DATABASE!r} (data in {data_dir}); commands run without DATABASE_URL "
              f"find it")
    try:
        applied = asyncio.run(migrate.migrate(env["DATABASE_URL"]))
    except migrate.MigrationChanged as exc:
        raise SystemExit(f"stack: migrate refused: {exc}") from exc
    print(f"stack: migrations applied: {applied.migrations or 'none pending'}"
          f"{'; functions applied' if applied.functions else ''}")
    defaults = Settings(database_url=env["DATABASE_URL"])
    env.setdefault("KASPI_LISTEN", defaults.kaspi_listen)
    env.setdefault("SIMULATOR_LISTEN", defaults.simulator_listen)
    env.setdefault("SIM_MPP_REFUND_URL", f"http://{env['KASPI_LISTEN']}/refund")
    env.setdefault("SIM_CALLER_NAMES", env.get("KASPI_CALLER_NAME", defaults.kaspi_caller_name))
    if not env.get("WALLET_API_TOKENS"):
        env["WALLET_API_TOKENS"] = "dev-" + secrets.token_urlsafe(18)
        print(f"stack: WALLET_API_TOKENS was unset; this run's token: {env['WALLET_API_TOKENS']}")
    if not env.get("DEPOSIT_API_TOKENS"):
        # Deposits create money: they take only these tokens, never a wallet token.
        env["DEPOSIT_API_TOKENS"] = "dev-deposit-" + secrets.token_urlsafe(18)
        print(f"stack: DEPOSIT_API_TOKENS was unset; this run's deposit token: "
              f"{env['DEPOSIT_API_TOKENS']}")
    wallet_listen = env.get("WALLET_LISTEN", defaults.wallet_listen)
    procs: list[subprocess.Popen[bytes]] = []
    # Installed explicitly: a shell that starts us in the background ignores SIGINT.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sim = subprocess.Popen([sys.executable, "-m", "mpp_server", "simulator"], env=env)
        procs.append(sim)
        server = subprocess.Popen([sys.executable, "-m", "mpp_server", "serve"], env=env)
        procs.append(server)
        _wait_http(f"http://{env['SIMULATOR_LISTEN']}/sim/healthz", 30, sim)
        _wait_http(f"http://{wallet_listen}/readyz", 30, server)
        print(f"stack: ready. wallet API http://{wallet_listen}, Kaspi-facing "
              f"http://{env['KASPI_LISTEN']}, simulator http://{env['SIMULATOR_LISTEN']}, "
              f"Kaspi at {env.get('KASPI_BASE_URL', defaults.kaspi_base_url)}, operators' "
              f"console http://{env.get('ADMIN_LISTEN', defaults.admin_listen)} (a first "
              "operator: python -m mpp_server operators add LOGIN --role admin). Ctrl-C stops.")
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("stack: a process exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstack: stopping")
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if started_postgres is not None:
            # Ctrl-C stops everything this run started; a cluster that was already
            # running (make test's, say) is left as it was.
            devdb.stop_postgres(started_postgres)
            print("stack: private PostgreSQL stopped")

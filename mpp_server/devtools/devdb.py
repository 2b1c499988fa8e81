"""A private PostgreSQL for `make run` and `make test` when DATABASE_URL is unset.

initdb into `.data/pg` (reused on later runs), listening on loopback only, started as
an unprivileged user because PostgreSQL refuses to run as root. Trust authentication
is acceptable only because the server listens on 127.0.0.1 and is a developer's
scratch database; production sets DATABASE_URL.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from mpp_server import migrate
from mpp_server.config import DEVDB_DEFAULT_PORT
from mpp_server.devtools.launcher import free_port

DEFAULT_PORT = DEVDB_DEFAULT_PORT
SUPERUSER = "mpp"
PG_BIN_CANDIDATES = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
                     "/usr/lib/postgresql/15/bin")


def pg_bin(name: str) -> str:
    for folder in PG_BIN_CANDIDATES:
        path = Path(folder) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install PostgreSQL (apt-get install postgresql)")
    return found


def run_as_owner(cmd: list[str], owner: str | None) -> subprocess.CompletedProcess[str]:
    if owner is not None:
        cmd = ["runuser", "-u", owner, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def cluster_owner() -> str | None:
    """The unprivileged user that owns the cluster when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise SystemExit("running as root and no 'postgres' user exists to own the database")


def is_running(data_dir: Path) -> bool:
    if not (data_dir / "PG_VERSION").exists():
        return False
    status = run_as_owner([pg_bin("pg_ctl"), "-D", str(data_dir.resolve()), "status"],
                           cluster_owner())
    return status.returncode == 0


class PortTaken(SystemExit):
    pass


def running_port(data_dir: Path) -> int | None:
    """The port the cluster in data_dir was started on (postmaster.pid's 4th line)."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        return int(lines[3])
    except (OSError, IndexError, ValueError):
        return None


def _port_is_free(port: int) -> bool:
    """No listener on the port. SO_REUSEADDR as PostgreSQL sets it: a port whose last
    connections are still in TIME_WAIT (a cluster just stopped) is free to listen on."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _taken(port: int, why: str) -> PortTaken:
    free = free_port()
    return PortTaken(
        f"devdb: port {port} on 127.0.0.1 {why}. Another checkout's private PostgreSQL? "
        f"Give this checkout its own port with MPP_DEVDB_PORT (e.g. "
        f"MPP_DEVDB_PORT={free} make run), and use the same MPP_DEVDB_PORT for the other "
        f"commands (serve, reconcile) that should find it.")


def _conf_line(name: str, value: str) -> str:
    quoted = value.replace("'", "''")
    return f"{name} = '{quoted}'\n"


def ensure_postgres(data_dir: Path, port: int = DEFAULT_PORT,
                    conf: dict[str, str] | None = None) -> str:
    """Start (initdb if needed) the private cluster and return its DSN. A port that is
    taken by something else stops here with a message naming MPP_DEVDB_PORT (it was
    pg_ctl's log before, after an initdb). `conf`: settings written into a new
    cluster's postgresql.conf (the backup drill's WAL archiving)."""
    data_dir = data_dir.resolve()
    if is_running(data_dir):
        actual = running_port(data_dir)
        if actual is not None and actual != port:
            raise _taken(port, f"is not where this checkout's PostgreSQL runs (it runs on "
                               f"{actual})")
    elif not _port_is_free(port):
        raise _taken(port, "is taken")
    owner = cluster_owner()
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            shutil.chown(data_dir, user=owner)
            # The owner must be able to reach the folder through its parents.
            for parent in data_dir.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        res = run_as_owner([pg_bin("initdb"), "-D", str(data_dir), "-U", SUPERUSER,
                             "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"], owner)
        if res.returncode != 0:
            raise SystemExit(f"initdb failed:\n{res.stdout}\n{res.stderr}")
        with (data_dir / "postgresql.conf").open("a") as settings:
            settings.writelines(_conf_line(name, value) for name, value in (conf or {}).items())
    dsn = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
    if is_running(data_dir):
        return dsn
    opts = (f"-c listen_addresses=127.0.0.1 -c port={port} "
            f"-c unix_socket_directories={data_dir} "
            "-c max_connections=300 -c shared_buffers=256MB "
            "-c fsync=on -c synchronous_commit=on")
    res = run_as_owner([pg_bin("pg_ctl"), "-D", str(data_dir), "-l",
                         str(data_dir / "server.log"), "-o", opts, "-w", "-t", "60", "start"],
                        owner)
    if res.returncode != 0:
        log = (data_dir / "server.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n{log}")
    _wait_ready(port)
    return dsn


def _wait_ready(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    isready = pg_bin("pg_isready")
    while time.monotonic() < deadline:
        res = subprocess.run([isready, "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True, check=False)
        if res.returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit("PostgreSQL did not become ready")


def stop_postgres(data_dir: Path) -> None:
    run_as_owner([pg_bin("pg_ctl"), "-D", str(data_dir.resolve()), "-m", "fast", "stop"],
                  cluster_owner())


def configured() -> tuple[Path, int]:
    """The private cluster's folder and port: MPP_DEVDB_DIR and MPP_DEVDB_PORT, else
    .data/pg and 54329."""
    return (Path(os.environ.get("MPP_DEVDB_DIR") or ".data/pg"),
            int(os.environ.get("MPP_DEVDB_PORT") or DEFAULT_PORT))


def socket_dsn(data_dir: Path, port: int, database: str = "postgres") -> str:
    """The cluster over its Unix socket (in its data folder): on one machine a round trip
    costs less CPU than over TCP loopback (docs/performance.md)."""
    return f"postgresql://{SUPERUSER}@/{database}?host={data_dir.resolve()}&port={port}"


def with_database(dsn: str, name: str) -> str:
    """`dsn` pointing at database `name` instead."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


async def ensure_database(admin_dsn: str, name: str) -> str:
    """Database `name` on the cluster (created if missing); its DSN."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


@asynccontextmanager
async def fresh_database(admin_dsn: str, prefix: str, *, keep: bool = False,
                         sql_dir: Path = migrate.SQL_DIR) -> AsyncIterator[str]:
    """A new database PREFIX_<random> with every migration of `sql_dir` applied, dropped
    afterwards (unless `keep`)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    dsn = await ensure_database(admin_dsn, name)
    try:
        await migrate.migrate(dsn, sql_dir)
        await _own_invoice_range(dsn)
        yield dsn
    finally:
        if not keep:
            conn = await asyncpg.connect(admin_dsn)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()


async def _own_invoice_range(dsn: str) -> None:
    """Halyk's invoiceIDs come from a sequence of the database, one installation's at
    Halyk: databases made here share one simulator, so each starts where none other does."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT setval('halyk_invoice_seq', $1)",
                           secrets.randbelow(800_000_000) + 100_000_000)
    finally:
        await conn.close()


def main(argv: list[str]) -> int:
    """`python -m mpp_server devdb [start|stop]`: print the DSN of the private cluster."""
    data_dir, port = configured()
    action = argv[0] if argv else "start"
    if action == "stop":
        stop_postgres(data_dir)
        return 0
    print(ensure_postgres(data_dir, port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

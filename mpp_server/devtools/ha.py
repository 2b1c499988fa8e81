"""`make ha` / `python -m mpp_server ha`: the high-availability topology on one machine
(docs/high-availability.md).

etcd (one member), two Patroni-managed PostgreSQL nodes with synchronous replication,
HAProxy (a port for the primary, checked through Patroni's REST API; a port spreading
wallet traffic, one spreading Kaspi's /refund, over the servers), the Kaspi simulator and
N `serve` processes: half reach the database through HAProxy's primary port, half
through a multi-host DATABASE_URL (`target_session_attrs=read-write`), so both ways of
following a failover run side by side. Configs are rendered from the operators'
templates in deploy/ha/. Everything lives in a fresh folder (.data/ha) and Ctrl-C stops
it all. tests/system/test_failover.py drives the same `Topology`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from string import Template
from typing import Any

import asyncpg

from mpp_server import migrate
from mpp_server.devtools import devdb
from mpp_server.devtools.launcher import (
    LaunchError,
    Listeners,
    Processes,
    Tokens,
    free_ports,
    loopback,
    send_signal,
    server_env,
    simulator_listen,
    simulator_process_env,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "deploy" / "ha"
SCOPE = "mpp"
DATABASE = "mpp"
SUPERUSER = devdb.SUPERUSER
# The roles of deploy/ha/roles.sql: migrations run as the owner, the servers as a role
# that owns nothing (docs/operations.md, "Roles").
OWNER = "mpp_owner"
SERVER_ROLE = "mpp_server"
TOOLS = {"patroni": "patroni", "patronictl": "patroni", "etcd": "etcd-server",
         "haproxy": "haproxy", "pgbackrest": "pgbackrest"}
READY_TIMEOUT_S = 120.0


class TopologyError(LaunchError):
    """A part of the topology did not start; the message says which and where its log is."""


def _tool(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                  else None)


def _pg_bin_dir() -> Path | None:
    for folder in devdb.PG_BIN_CANDIDATES:
        if (Path(folder) / "postgres").exists():
            return Path(folder)
    return None


def missing_requirements() -> str | None:
    """Why this machine cannot run the topology, or None."""
    missing = sorted({pkg for name, pkg in TOOLS.items() if _tool(name) is None})
    if _pg_bin_dir() is None:
        missing.append("postgresql")
    if missing:
        return (f"not installed: {' '.join(missing)} (apt-get install "
                f"--no-install-recommends {' '.join(missing)}; .ci/run installs them)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no 'postgres' user to run Patroni as"
    return None


def get_json(url: str, timeout_s: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def _ready(server_url: str) -> bool:
    return bool(get_json(server_url + "/readyz")["status"] == "ready")


def children_of(parent: int) -> list[int]:
    """The pids whose parent is `parent` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


@dataclass
class Node:
    """One PostgreSQL node and the Patroni that manages it."""

    name: str
    pg_port: int
    rest_port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def config(self) -> Path:
        return self.folder / "patroni.yml"

    @property
    def backup_config(self) -> Path:
        return self.folder / "pgbackrest.conf"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def patroni_pid(self) -> int | None:
        """Patroni's own process: under `runuser`, the wrapper's child."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        if os.geteuid() != 0:
            return self.proc.pid
        children = children_of(self.proc.pid)
        return children[0] if children else None

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


@dataclass
class Topology:
    base: Path
    nodes_count: int = 2
    servers_count: int = 2
    wallet_port: int = 0
    kaspi_port: int = 0
    sim_port: int = 0
    # Tuning over the launcher's environment, for every server (the tests' fast retries).
    server_env: dict[str, str] = field(default_factory=dict)
    tokens: Tokens = field(default_factory=lambda: Tokens.new("dev"))
    nodes: list[Node] = field(default_factory=list)
    server_dsns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = iter(free_ports(6 + 2 * self.nodes_count
                                + Listeners.COUNT * self.servers_count))
        self.wallet_port = self.wallet_port or next(ports)
        self.kaspi_port = self.kaspi_port or next(ports)
        self.sim_port = self.sim_port or next(ports)
        self.etcd_port, self.etcd_peer_port, self.primary_port = (next(ports), next(ports),
                                                                  next(ports))
        self.nodes = [Node(f"pg{i + 1}", next(ports), next(ports), self.base / f"pg{i + 1}")
                      for i in range(self.nodes_count)]
        self.listeners = [Listeners.on(ports) for _ in range(self.servers_count)]
        self.server_urls = [listeners.wallet_url for listeners in self.listeners]
        self.kaspi_urls = [listeners.kaspi_url for listeners in self.listeners]
        self._owner = "postgres" if os.geteuid() == 0 else None
        # Each in a session of its own: Ctrl-C reaches `make ha`, which stops them in
        # order (the servers before the database).
        self.processes = Processes(self.base / "logs", cwd=self.base, own_session=True)

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.processes.procs

    @property
    def token(self) -> str:
        return self.tokens.wallet

    @property
    def deposit_token(self) -> str:
        return self.tokens.deposit

    # ---- addresses ------------------------------------------------------------------

    @property
    def wallet_url(self) -> str:
        return f"http://127.0.0.1:{self.wallet_port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def primary_dsn_as(self, user: str) -> str:
        """Through HAProxy's primary port."""
        return f"postgresql://{user}@127.0.0.1:{self.primary_port}/{DATABASE}"

    def multi_host_dsn_as(self, user: str) -> str:
        hosts = ",".join(f"127.0.0.1:{n.pg_port}" for n in self.nodes)
        return f"postgresql://{user}@{hosts}/{DATABASE}?target_session_attrs=read-write"

    @property
    def primary_dsn(self) -> str:
        """The superuser's, for an operator's psql."""
        return self.primary_dsn_as(SUPERUSER)

    @property
    def repository(self) -> Path:
        """pgBackRest's repository, shared by the nodes (one stanza: the scope)."""
        return self.base / "pgbackrest-repo"

    # ---- processes ------------------------------------------------------------------

    def _prepare_folder(self) -> None:
        if self.base.exists():
            shutil.rmtree(self.base)
        (self.base / "logs").mkdir(parents=True)
        # Where Patroni (the postgres user) can run it.
        for script in ("post_bootstrap.sh", "roles.sql"):
            shutil.copy(TEMPLATES / script, self.base)
        self.repository.mkdir()
        if self._owner is None:
            return
        shutil.chown(self.repository, user=self._owner)
        # Patroni runs as postgres: it must reach its folder through the parents.
        for parent in [self.base, *self.base.parents]:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.processes.start("etcd", [
            _tool("etcd") or "etcd", "--name", "e1", "--data-dir", str(self.base / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"e1={peer}"])
        self._wait(lambda: get_json(client + "/health").get("health") == "true",
                   "etcd healthy")

    def _render_node(self, node: Node) -> None:
        node.folder.mkdir()
        for work in ("log", "lock", "spool"):
            (node.folder / "pgbackrest" / work).mkdir(parents=True)
        node.backup_config.write_text(Template(
            (TEMPLATES / "pgbackrest.conf").read_text()).substitute(
            SCOPE=SCOPE, BACKREST_REPO=self.repository,
            BACKREST_WORK=node.folder / "pgbackrest", DATA_DIR=node.data_dir,
            PG_PORT=node.pg_port, SOCKET_DIR=node.folder, SUPERUSER=SUPERUSER))
        text = Template((TEMPLATES / "patroni.yml").read_text()).substitute(
            SCOPE=SCOPE, NODE_NAME=node.name, BACKREST_CONFIG=node.backup_config,
            RESTAPI_LISTEN=f"127.0.0.1:{node.rest_port}",
            RESTAPI_CONNECT=f"127.0.0.1:{node.rest_port}",
            ETCD_HOSTS=f"127.0.0.1:{self.etcd_port}",
            PG_LISTEN=f"127.0.0.1:{node.pg_port}", PG_CONNECT=f"127.0.0.1:{node.pg_port}",
            DATA_DIR=node.data_dir, BIN_DIR=_pg_bin_dir(), PGPASS=node.folder / "pgpass",
            SOCKET_DIR=node.folder, SUPERUSER=SUPERUSER,
            REPLICATION_USER="replicator",
            # Loopback only, a developer's scratch cluster: trust, as devdb does.
            CLIENT_NETWORK="127.0.0.1/32", AUTH_METHOD="trust",
            POST_BOOTSTRAP=self.base / "post_bootstrap.sh",
            SUPERUSER_PASSWORD=secrets.token_hex(12),
            REPLICATION_PASSWORD=secrets.token_hex(12))
        node.config.write_text(text)
        if self._owner is not None:
            for path in (node.folder, *node.folder.rglob("*")):
                shutil.chown(path, user=self._owner)
            node.folder.chmod(0o700)

    def start_node(self, node: Node) -> None:
        patroni = _tool("patroni") or "patroni"
        args = [patroni, str(node.config)]
        if self._owner is not None:
            args = ["runuser", "-u", self._owner, "--", *args]
        # post_bootstrap.sh creates the stanza with the node's pgBackRest configuration.
        node.proc = self.processes.start(node.name, args, {
            "BACKREST_CONFIG": str(node.backup_config), "SCOPE": SCOPE})

    def _render_haproxy(self) -> Path:
        def lines(entries: list[str]) -> str:
            return "\n".join(f"    {entry}" for entry in entries)

        text = Template((TEMPLATES / "haproxy.cfg").read_text()).substitute(
            PRIMARY_BIND=f"127.0.0.1:{self.primary_port}",
            WALLET_BIND=f"127.0.0.1:{self.wallet_port}",
            KASPI_BIND=f"127.0.0.1:{self.kaspi_port}",
            PG_SERVERS=lines([f"server {n.name} 127.0.0.1:{n.pg_port} check port "
                              f"{n.rest_port}" for n in self.nodes]),
            WALLET_SERVERS=lines([f"server s{i + 1} {listeners.wallet} check"
                                  for i, listeners in enumerate(self.listeners)]),
            KASPI_SERVERS=lines([f"server s{i + 1} {listeners.kaspi} check"
                                 for i, listeners in enumerate(self.listeners)]))
        path = self.base / "haproxy.cfg"
        path.write_text(text)
        return path

    def start_database(self) -> None:
        """etcd, the Patroni nodes, HAProxy; waits for a leader and a synchronous
        standby, then migrates the database (post_bootstrap.sh created it)."""
        self._prepare_folder()
        self._start_etcd()
        for node in self.nodes:
            self._render_node(node)
            self.start_node(node)
        config = self._render_haproxy()
        check = subprocess.run([_tool("haproxy") or "haproxy", "-c", "-q", "-f", str(config)],
                               capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise TopologyError(f"haproxy refused {config}: {check.stderr}")
        self.processes.start("haproxy", [_tool("haproxy") or "haproxy", "-db", "-f", str(config)])
        self.wait_sync_standby()
        asyncio.run(self._migrate())
        self.pgbackrest("backup", "--type=full")

    async def _migrate(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:  # HAProxy needs a check or two to see the primary
            try:
                await migrate.migrate(self.primary_dsn_as(OWNER))
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    def start_apps(self) -> None:
        """The simulator and the servers, each ready before this returns."""
        self.processes.start_simulator(simulator_process_env(
            loopback(self.sim_port), f"http://127.0.0.1:{self.kaspi_port}/refund"))
        self.server_dsns = []
        for i, listeners in enumerate(self.listeners):
            dsn = (self.primary_dsn_as(SERVER_ROLE) if i % 2 == 0
                   else self.multi_host_dsn_as(SERVER_ROLE))
            self.server_dsns.append(dsn)
            self.processes.start_server(f"server{i + 1}", {
                **server_env(dsn, self.sim_url, listeners, self.tokens), **self.server_env})
        self._wait(lambda: get_json(self.sim_url + "/sim/healthz") is not None,
                   "simulator ready", "simulator")
        for i, url in enumerate(self.server_urls):
            self._wait(partial(_ready, url), f"server{i + 1} ready", f"server{i + 1}")

    def _wait(self, ready: Callable[[], object], what: str, proc_name: str | None = None,
              timeout_s: float = READY_TIMEOUT_S) -> None:
        """The launcher's wait, with the nodes' logs when the cluster never got there."""
        try:
            self.processes.wait_until(ready, what, proc_name, timeout_s)
        except LaunchError as exc:
            tails = "".join(f"\n--- {n.name}'s log ends:\n{self.log_tail(n.name, 1500)}"
                            for n in self.nodes)
            raise TopologyError(f"{exc}; logs in {self.base / 'logs'}{tails}") from exc

    # ---- the cluster's state and the operations on it ------------------------------

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the cluster, from the first node that answers."""
        for node in self.nodes:
            try:
                members: list[dict[str, Any]] = get_json(node.rest_url + "/cluster")["members"]
                return members
            except (OSError, ValueError, KeyError):
                continue
        return []

    def leader(self) -> str | None:
        for member in self.members():
            if member.get("role") == "leader" and member.get("state") == "running":
                return str(member["name"])
        return None

    def sync_standby(self) -> str | None:
        for member in self.members():
            if (member.get("role") == "sync_standby"
                    and member.get("state") in ("running", "streaming")):
                return str(member["name"])
        return None

    def wait_sync_standby(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        self._wait(lambda: self.leader() is not None and self.sync_standby() is not None,
                   "a leader with a synchronous standby", timeout_s=timeout_s)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return self.processes.log_tail(name, chars)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def kill_node(self, name: str) -> None:
        """The machine is lost: kill -9 its Patroni, then its postmaster. (Killing only
        the postmaster is no failover: the node's Patroni still holds the leader key and
        restarts PostgreSQL in place.)"""
        node = self.node(name)
        postmaster = node.postmaster_pid()
        send_signal(node.patroni_pid(), signal.SIGKILL)
        send_signal(postmaster, signal.SIGKILL)
        if node.proc is not None:
            node.proc.wait(timeout=10)

    def pgbackrest(self, *args: str) -> str:
        """A pgBackRest command on the current leader (backups are taken from the primary;
        `check` proves its WAL reaches the repository)."""
        leader = self.leader()
        if leader is None:
            raise TopologyError("no leader to run pgbackrest on")
        done = devdb.run_as_owner(["pgbackrest", f"--config={self.node(leader).backup_config}",
                                   f"--stanza={SCOPE}", *args], self._owner)
        if done.returncode != 0:
            raise TopologyError(f"pgbackrest {' '.join(args)} on {leader} failed: "
                                f"{done.stdout}{done.stderr}")
        return done.stdout

    def switchover(self, candidate: str) -> subprocess.CompletedProcess[str]:
        """A planned switchover (`patronictl switchover --force`), as an operator runs it."""
        leader = self.leader()
        return subprocess.run(
            [_tool("patronictl") or "patronictl", "-c", str(self.nodes[0].config),
             "switchover", "--force", "--candidate", candidate,
             *(["--leader", leader] if leader else [])],
            capture_output=True, text=True, check=False, timeout=60)

    def stop(self) -> None:
        """Everything this topology started, in reverse order; Patroni stops its
        PostgreSQL itself (fast shutdown), a stray postmaster is killed."""
        def pid_of(name: str) -> int | None:
            node = next((n for n in self.nodes if n.name == name), None)
            return node.patroni_pid() if node else self.procs[name].pid

        self.processes.stop(timeout_s=30, pid_of=pid_of)
        for node in self.nodes:
            send_signal(node.postmaster_pid(), signal.SIGKILL)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _watch(topology: Topology) -> int:
    """Report role changes until Ctrl-C or an essential process exits."""
    essential = [name for name in topology.procs if not name.startswith("pg")]
    roles: dict[str, str] = {}
    while True:
        for name in essential:
            if topology.procs[name].poll() is not None:
                print(f"ha: {name} exited; stopping the others", file=sys.stderr)
                return 1
        now = {str(m["name"]): f"{m.get('role')} ({m.get('state')})"
               for m in topology.members()}
        if now != roles:
            print("ha: cluster " + ", ".join(f"{k}: {v}" for k, v in sorted(now.items())),
                  flush=True)
            roles = now
        time.sleep(1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server ha",
        description="Start etcd, two Patroni-managed PostgreSQL nodes (synchronous "
                    "replication), HAProxy, the Kaspi simulator and N servers on this "
                    "machine; Ctrl-C stops them all. docs/high-availability.md.")
    parser.add_argument("--servers", type=int, default=2, help="serve processes (2)")
    parser.add_argument("--dir", default=".data/ha",
                        help="working folder, emptied first (.data/ha)")
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason:
        print(f"ha: {reason}", file=sys.stderr)
        return 2
    # HAProxy and the simulator on the usual ports, so the README's payment works as is.
    defaults = Listeners.configured(os.environ)

    def port(listen: str) -> int:
        return int(listen.rpartition(":")[2])

    topology = Topology(Path(args.dir).resolve(), servers_count=args.servers,
                        wallet_port=port(defaults.wallet), kaspi_port=port(defaults.kaspi),
                        sim_port=port(simulator_listen(os.environ)))
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(f"ha: starting etcd, {topology.nodes_count} Patroni nodes and HAProxy in "
              f"{topology.base} (about 20 s)", flush=True)
        topology.start_database()
        topology.start_apps()
        ctl = f"patronictl -c {topology.nodes[0].config}"
        as_postgres = "runuser -u postgres -- " if os.geteuid() == 0 else ""
        backrest = (f"{as_postgres}pgbackrest --stanza={SCOPE} "
                    f"--config={topology.base}/LEADER/pgbackrest.conf")
        rows = [
            (f"wallet API (HAProxy, {args.servers} servers)",
             f"{topology.wallet_url}  token {topology.token}"),
            ("deposit token (DEPOSIT_API_TOKENS)", topology.deposit_token),
            ("Kaspi-facing /refund (HAProxy)", f"http://127.0.0.1:{topology.kaspi_port}/refund"),
            ("simulator", topology.sim_url),
            ("primary (HAProxy), superuser", topology.primary_dsn),
            ("migrations (owner)", topology.primary_dsn_as(OWNER)),
            ("servers (owning nothing)", topology.multi_host_dsn_as(SERVER_ROLE)),
            ("servers", " ".join(topology.server_urls)),
            ("cluster state", f"{ctl} list"),
            ("planned switchover", f"{ctl} switchover --force"),
            ("backups (a full one was taken)", f"{backrest} info"),
            ("a differential backup", f"{backrest} backup --type=diff"),
            ("logs", str(topology.base / "logs"))]
        print("ha: ready. Ctrl-C stops everything.\n" + "\n".join(
            f"  {what:<36} {value}" for what, value in rows), flush=True)
        return _watch(topology)
    except KeyboardInterrupt:
        print("\nha: stopping")
        return 0
    except TopologyError as exc:
        print(f"ha: {exc}", file=sys.stderr)
        return 1
    finally:
        topology.stop()
        print("ha: stopped")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

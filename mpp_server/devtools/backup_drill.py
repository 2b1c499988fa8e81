"""`make backup-drill` / `python -m mpp_server backup-drill`: prove a point-in-time
restore with pgBackRest (docs/operations.md, "Backups and point-in-time recovery").

On a PostgreSQL cluster of its own (initdb in --dir, WAL archived by pgBackRest into a
repository there): a full backup; N payments through the real server and the Kaspi
simulator; the target time T; M more payments; the WAL archived; a restore to T into a
fresh data directory, started on another port, which must hold exactly the N payments
(the same ids, all COMPLETED) with the ledger's invariants holding; then a restore to
the latest archived WAL, which must hold all N + M. The last line printed is JSON:
{"tool": "pgbackrest", "restored_to": T, "payments_before_target": N,
 "payments_after_target": M, "found": ..., "invariants": ..., "found_at_latest": ...};
the exit status is 0 only when everything matched. The steps are the runbook's
(docs/operations.md, "Restore runbook").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from string import Template
from typing import Any

import aiohttp
import asyncpg

from mpp_server import migrate
from mpp_server.devtools import devdb, launcher
from mpp_server.devtools.launcher import (
    LaunchError,
    Listeners,
    Processes,
    Tokens,
    free_ports,
    loopback,
)
from mpp_server.domain import ledger

STANZA = "drill"
BACKREST_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "ha" / "pgbackrest.conf"
DATABASE = "mpp"
TOKENS = Tokens.new("drill")
PROMOTE_TIMEOUT_S = 60.0


class DrillFailed(RuntimeError):
    """A step of the drill failed; the message says which, with the tool's output."""


@dataclass(frozen=True)
class Repository:
    """The drill's folder: the cluster, pgBackRest's configuration and repository."""

    base: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.base / "pg"

    @property
    def config(self) -> Path:
        return self.base / "pgbackrest.conf"

    def write_config(self) -> None:
        """pgBackRest's configuration: the operators' template (deploy/ha/pgbackrest.conf,
        as `make ha` renders it per node), for this cluster and a repository here."""
        for folder in ("repo", "work/log", "work/lock", "work/spool"):
            (self.base / folder).mkdir(parents=True)
        self.config.write_text(Template(BACKREST_TEMPLATE.read_text()).substitute(
            SCOPE=STANZA, BACKREST_REPO=self.base / "repo", BACKREST_WORK=self.base / "work",
            DATA_DIR=self.data_dir, PG_PORT=self.port, SOCKET_DIR=self.data_dir,
            SUPERUSER=devdb.SUPERUSER))
        owner = devdb.cluster_owner()
        if owner is not None:
            for path in (self.base, *self.base.rglob("*")):
                shutil.chown(path, user=owner)

    def archive_command(self) -> str:
        return f"pgbackrest --config={self.config} --stanza={STANZA} archive-push %p"

    def pgbackrest(self, *args: str) -> str:
        done = devdb.run_as_owner(["pgbackrest", f"--config={self.config}",
                                   f"--stanza={STANZA}", *args], devdb.cluster_owner())
        if done.returncode != 0:
            raise DrillFailed(f"pgbackrest {' '.join(args)} failed ({done.returncode}):\n"
                              f"{done.stdout}{done.stderr}")
        return done.stdout

    def backup_label(self) -> str:
        """The label of the latest backup (pgBackRest picks a set by its stop time, in
        whole seconds: a target within a second of the backup needs it named)."""
        info = json.loads(self.pgbackrest("info", "--output=json"))
        return str(info[0]["backup"][-1]["label"])

    def restore(self, into: Path, *target: str) -> None:
        """Restore the latest backup into an empty folder, recovering to the target
        given (none: to the end of the archived WAL); archiving off, so the copy never
        writes into the repository."""
        into.mkdir(mode=0o700)
        owner = devdb.cluster_owner()
        if owner is not None:
            shutil.chown(into, user=owner)
        self.pgbackrest(f"--pg1-path={into}", "--archive-mode=off",
                        f"--set={self.backup_label()}", *target, "restore")


def dsn(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{devdb.SUPERUSER}@127.0.0.1:{port}/{database}"


@contextmanager
def wallet(database_url: str, log_dir: Path) -> Iterator[tuple[str, str]]:
    """The Kaspi simulator and a server, started by the dev launcher as `make run` starts
    them: (the wallet's URL, the simulator's)."""
    sim_port, *ports = free_ports(1 + Listeners.COUNT)
    listeners = Listeners.on(iter(ports))
    sim_env = launcher.simulator_process_env(loopback(sim_port),
                                             listeners.kaspi_url + "/refund")
    sim_url = f"http://{loopback(sim_port)}"
    procs = Processes(log_dir)
    try:
        procs.start_simulator(sim_env)
        procs.start_server("server", {
            **launcher.server_env(database_url, sim_url, listeners, TOKENS),
            "LOG_LEVEL": "WARNING"})
        procs.wait_http("simulator", sim_url + "/sim/healthz")
        procs.wait_http("server", listeners.wallet_url + "/readyz")
        yield listeners.wallet_url, sim_url
    except LaunchError as exc:
        raise DrillFailed(str(exc)) from exc
    finally:
        procs.stop()


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any],
                token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(url, json=body, headers=headers) as resp:
        answer: dict[str, Any] = await resp.json(content_type=None)
        if resp.status not in (200, 201):
            raise DrillFailed(f"POST {url} answered {resp.status}: {answer}")
        return answer


async def pay(http: aiohttp.ClientSession, wallet_url: str, sim_url: str, customer: str
              ) -> str:
    """One Dynamic QR payment, scanned and confirmed: its paymentId once COMPLETED."""
    qr = await _post(http, f"{sim_url}/sim/qr", {"type": "Dynamic", "amount": "10.00"})
    scanned = await _post(http, f"{wallet_url}/v1/scan",
                          {"qrCode": qr["qrCode"], "customerId": customer}, TOKENS.wallet)
    payment_id = str(scanned["payment"]["paymentId"])
    paid = await _post(http, f"{wallet_url}/v1/payments/{payment_id}/confirm",
                       {"customerId": customer}, TOKENS.wallet)
    if paid["status"] != "COMPLETED":
        raise DrillFailed(f"payment {payment_id} is {paid['status']}, not COMPLETED")
    return payment_id


async def payments_and_target(database_url: str, wallet_url: str, sim_url: str,
                              before: int, after: int
                              ) -> tuple[list[str], list[str], datetime]:
    """`before` payments, the target time, `after` more."""
    customer = "77" + str(uuid.uuid4().int)[:10]
    async with aiohttp.ClientSession() as http:
        await _post(http, f"{wallet_url}/v1/accounts/{customer}/deposits",
                    {"depositId": "drill-" + customer, "amount": "100000.00"},
                    TOKENS.deposit)
        first = [await pay(http, wallet_url, sim_url, customer) for _ in range(before)]
        conn = await asyncpg.connect(database_url)
        try:
            target: datetime = await conn.fetchval("SELECT clock_timestamp()")
        finally:
            await conn.close()
        second = [await pay(http, wallet_url, sim_url, customer) for _ in range(after)]
    return first, second, target


@dataclass(frozen=True)
class Found:
    payment_ids: set[str]
    all_completed: bool
    invariants: bool


async def read_restored(port: int) -> Found:
    """Once the restored cluster has promoted: its payments and the ledger's state."""
    deadline = time.monotonic() + PROMOTE_TIMEOUT_S
    conn = await asyncpg.connect(dsn(port))
    try:
        while await conn.fetchval("SELECT pg_is_in_recovery()"):
            if time.monotonic() > deadline:
                raise DrillFailed(f"the restored cluster on port {port} did not promote")
            await asyncio.sleep(0.1)
        rows = await conn.fetch("SELECT payment_id, status FROM payments")
        report = await ledger.check_invariants(conn)
    finally:
        await conn.close()
    return Found({r["payment_id"] for r in rows},
                 all(r["status"] == "COMPLETED" for r in rows), report.ok)


def verdict(expected: list[str], found: Found) -> bool:
    """Exactly the expected payments, all COMPLETED, the books balanced."""
    return found.payment_ids == set(expected) and found.all_completed and found.invariants


def restored(repo: Repository, folder: Path, port: int, *target: str) -> Found:
    repo.restore(folder, *target)
    devdb.ensure_postgres(folder, port)
    try:
        return asyncio.run(read_restored(port))
    finally:
        devdb.stop_postgres(folder)


@contextmanager
def step(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"backup-drill: {what} ({time.monotonic() - started:.1f} s)", flush=True)


def drill(base: Path, before: int, after: int) -> dict[str, Any]:
    port, target_port, latest_port = free_ports(3)
    repo = Repository(base, port)
    repo.write_config()
    with step(f"cluster with WAL archiving on port {port}, stanza {STANZA}, database"):
        devdb.ensure_postgres(repo.data_dir, port, conf={
            "archive_mode": "on", "archive_command": repo.archive_command(),
            "wal_level": "replica"})
    try:
        with step("stanza created, database migrated"):
            repo.pgbackrest("stanza-create")
            asyncio.run(_create_database(port))
        with step("full backup"):
            repo.pgbackrest("--type=full", "backup")
        with step(f"{before} payments, the target time, {after} payments"), \
                wallet(dsn(port), base / "logs") as (wallet_url, sim_url):
            first, second, target = asyncio.run(payments_and_target(
                dsn(port), wallet_url, sim_url, before, after))
        with step("WAL archived (pgbackrest check)"):
            repo.pgbackrest("check")  # switches WAL and waits until it is archived
    finally:
        devdb.stop_postgres(repo.data_dir)
    with step(f"restored to {target.isoformat()} on port {target_port}"):
        at_target = restored(repo, base / "restored-to-target", target_port, "--type=time",
                             f"--target={target.isoformat(sep=' ')}",
                             "--target-action=promote")
    with step(f"restored to the latest archived WAL on port {latest_port}"):
        at_latest = restored(repo, base / "restored-to-latest", latest_port)
    ok = verdict(first, at_target) and verdict(first + second, at_latest)
    return {"tool": "pgbackrest", "restored_to": target.isoformat(),
            "payments_before_target": before, "payments_after_target": after,
            "found": len(at_target.payment_ids),
            "invariants": at_target.invariants and at_latest.invariants,
            "found_at_latest": len(at_latest.payment_ids), "ok": ok}


async def _create_database(port: int) -> None:
    await migrate.migrate(await devdb.ensure_database(dsn(port, "postgres"), DATABASE))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server backup-drill",
        description="Prove a point-in-time restore with pgBackRest on a cluster of its "
                    "own; the last line is JSON, the exit status 0 when it matched.")
    parser.add_argument("--payments", type=int, default=20,
                        help="payments before the target time (N)")
    parser.add_argument("--after", type=int, default=10,
                        help="payments after the target time (M)")
    parser.add_argument("--dir", type=Path, default=Path(".data/backup-drill"),
                        help="working folder, emptied first (.data/backup-drill)")
    args = parser.parse_args(argv)
    if shutil.which("pgbackrest") is None:
        print("backup-drill: pgbackrest is not installed (apt-get install "
              "--no-install-recommends pgbackrest; .ci/run installs it)", file=sys.stderr)
        return 2
    base = args.dir.resolve()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    try:
        result = drill(base, args.payments, args.after)
    except DrillFailed as exc:
        print(f"backup-drill: {exc}", file=sys.stderr)
        result = {"tool": "pgbackrest", "ok": False, "error": str(exc)[:500]}
    ok = bool(result.pop("ok"))
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

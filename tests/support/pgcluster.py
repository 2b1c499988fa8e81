"""A PostgreSQL cluster of a test's own (initdb in a temporary folder, its own port), to
stall, stop and start under a running server without touching the shared one."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from mpp_server import migrate
from mpp_server.devtools import devdb
from mpp_server.devtools.ha import children_of
from mpp_server.devtools.launcher import free_port


@dataclass
class PrivateCluster:
    data_dir: Path
    port: int

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{devdb.SUPERUSER}@127.0.0.1:{self.port}/postgres"

    async def create_database(self, name: str) -> str:
        """A database with every migration applied (it goes with the cluster)."""
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        dsn = self.admin_dsn.rsplit("/", 1)[0] + "/" + name
        await migrate.migrate(dsn)
        return dsn

    def start(self) -> None:
        devdb.ensure_postgres(self.data_dir, self.port)

    def stop(self) -> None:
        devdb.stop_postgres(self.data_dir)

    def _postmaster(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def pause(self) -> None:
        """SIGSTOP the postmaster (first: it forks no more), then every backend: the
        database stalls, its sockets stay open."""
        postmaster = self._postmaster()
        os.kill(postmaster, signal.SIGSTOP)
        for pid in children_of(postmaster):
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        postmaster = self._postmaster()
        for pid in children_of(postmaster):
            os.kill(pid, signal.SIGCONT)
        os.kill(postmaster, signal.SIGCONT)


@contextmanager
def folder_for_postgres(prefix: str) -> Iterator[Path]:
    """A fresh folder under /tmp that the `postgres` user can reach. Not pytest's
    tmp_path: every pytest session on the machine resets /tmp/pytest-of-USER to 0700,
    which would cut a running cluster off its own data directory."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    with folder_for_postgres("mpp-away-") as folder:
        cluster = PrivateCluster(folder / "pg", free_port())
        cluster.start()
        try:
            yield cluster
        finally:
            try:
                cluster.resume()
            except (OSError, ValueError):
                pass
            cluster.stop()

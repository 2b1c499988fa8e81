"""Issue 14 item 9: without DATABASE_URL every command finds the database `make run`
uses, and a second checkout whose private PostgreSQL port is taken is told what to do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mpp_server.config import Settings


def test_without_database_url_the_default_is_make_runs_database(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MPP_DEVDB_PORT", raising=False)
    assert Settings().database_url == "postgresql://mpp@127.0.0.1:54329/mpp"


def test_default_database_url_follows_mpp_devdb_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MPP_DEVDB_PORT", "55432")
    assert Settings().database_url == "postgresql://mpp@127.0.0.1:55432/mpp"


def test_taken_private_postgres_port_names_mpp_devdb_port(tmp_path: Path) -> None:
    with socket.socket() as taken:  # another checkout's PostgreSQL, as far as we know
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "MPP_DEVDB_DIR": str(tmp_path / "pg"),
               "MPP_DEVDB_PORT": str(port)}
        env.pop("DATABASE_URL", None)
        done = subprocess.run([sys.executable, "-m", "mpp_server", "devdb"], env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "MPP_DEVDB_PORT" in done.stderr and str(port) in done.stderr, done.stderr
    assert not (tmp_path / "pg" / "PG_VERSION").exists()  # nothing initialised

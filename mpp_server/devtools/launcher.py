"""The one launcher of the dev tools: the environment and the processes of the Kaspi
simulator and of `serve`, for `make run` (stack.py), `make ha` (ha.py), the benchmark
(bench/) and the tests (tests/support/stack.py and the tests that start processes).

Every variable by which the server reaches the simulator, as Kaspi and as the three card
acquirers, is set here, explicitly, by `simulator_env`: the server's Settings are
production's and hold no simulator values to fall back on, and renaming an acquirer's
variables is one edit here.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mpp_server.config import Settings
from mpp_server.devtools.simulator.acquirers import halyk_epay, kapital, kaspi_ecom
from mpp_server.devtools.simulator.settings import CALLER_NAME as CALLER_NAME  # exported
from mpp_server.devtools.simulator.settings import SimulatorSettings

LOOPBACK = "127.0.0.1"
# Where the simulator calls /refund from: it runs on this machine.
SIMULATOR_NETWORKS = "127.0.0.0/8"
# Test credentials the simulator's acquirers accept: any client id, terminal and merchant
# id; Halyk's secret and Kaspi e-commerce's token are the simulator's own.
HALYK_EPAY_CLIENT_ID = "mpp-test"
HALYK_EPAY_TERMINAL = "67e34d63-102f-4bd1-898e-370781d0074d"
KAPITAL_MERCHANT_ID = "MPPTEST"
MPP_SERVER = (sys.executable, "-m", "mpp_server")
READY_TIMEOUT_S = 30.0


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together, so none repeats)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def loopback(port: int) -> str:
    return f"{LOOPBACK}:{port}"


# ---- the environment ----------------------------------------------------------------

def simulator_env(sim_url: str) -> dict[str, str]:
    """How the server reaches the simulator at `sim_url`: as Kaspi, and as Halyk ePay,
    Kapital and Kaspi e-commerce, with the credentials the simulator accepts."""
    return {
        "KASPI_BASE_URL": sim_url, "KASPI_CALLER_NAME": CALLER_NAME,
        "HALYK_EPAY_BASE_URL": sim_url + halyk_epay.BASE,
        "HALYK_EPAY_CLIENT_ID": HALYK_EPAY_CLIENT_ID,
        "HALYK_EPAY_CLIENT_SECRET": halyk_epay.CLIENT_SECRET,
        "HALYK_EPAY_TERMINAL": HALYK_EPAY_TERMINAL,
        "KAPITAL_BASE_URL": sim_url + kapital.BASE, "KAPITAL_MERCHANT_ID": KAPITAL_MERCHANT_ID,
        "KASPI_ECOM_BASE_URL": sim_url + kaspi_ecom.BASE, "KASPI_ECOM_TOKEN": kaspi_ecom.TOKEN,
    }


def simulator_process_env(listen: str, mpp_refund_url: str,
                          caller_name: str = CALLER_NAME) -> dict[str, str]:
    """The simulator's own: where it listens, where it calls the MPP's /refund, and the
    X-Caller-Name it accepts (the one `simulator_env` gives the server)."""
    return {"SIMULATOR_LISTEN": listen, "SIM_MPP_REFUND_URL": mpp_refund_url,
            "SIM_CALLER_NAMES": caller_name}


@dataclass(frozen=True)
class Listeners:
    """One server process's listeners, `host:port` each."""

    wallet: str
    kaspi: str
    acquiring: str
    admin: str  # the operators' console

    COUNT = 4  # ports a server listens on

    @classmethod
    def on(cls, ports: Iterator[int]) -> Listeners:
        """On the next COUNT of `ports` (free_ports of a whole topology at once, so that
        no port repeats)."""
        return cls(*(loopback(next(ports)) for _ in range(cls.COUNT)))

    @classmethod
    def free(cls) -> Listeners:
        return cls.on(iter(free_ports(cls.COUNT)))

    @classmethod
    def configured(cls, env: Mapping[str, str]) -> Listeners:
        """`env`'s, else the defaults (8080, 8081, 8082, 8083): `make run`'s."""
        def listen(name: str) -> str:
            return env.get(name.upper()) or str(Settings.model_fields[name].default)

        return cls(listen("wallet_listen"), listen("kaspi_listen"), listen("acquiring_listen"),
                   listen("admin_listen"))

    @property
    def wallet_url(self) -> str:
        return f"http://{self.wallet}"

    @property
    def kaspi_url(self) -> str:
        return f"http://{self.kaspi}"

    def env(self) -> dict[str, str]:
        # Acquirers call back the acquiring listener itself: they run on this machine.
        return {"WALLET_LISTEN": self.wallet, "KASPI_LISTEN": self.kaspi,
                "ACQUIRING_LISTEN": self.acquiring,
                "ACQUIRING_PUBLIC_URL": f"http://{self.acquiring}", "ADMIN_LISTEN": self.admin}


def simulator_listen(env: Mapping[str, str]) -> str:
    """`env`'s SIMULATOR_LISTEN, else the simulator's default (8090)."""
    return env.get("SIMULATOR_LISTEN") or str(
        SimulatorSettings.model_fields["simulator_listen"].default)


@dataclass(frozen=True)
class Tokens:
    """The wallet's bearer tokens and the core-banking side's (deposits), comma-separated."""

    wallet: str
    deposit: str

    @classmethod
    def new(cls, prefix: str) -> Tokens:
        return cls(f"{prefix}-{secrets.token_urlsafe(18)}",
                   f"{prefix}-deposit-{secrets.token_urlsafe(18)}")

    def env(self) -> dict[str, str]:
        return {"WALLET_API_TOKENS": self.wallet, "DEPOSIT_API_TOKENS": self.deposit}


def server_env(database_url: str, sim_url: str, listeners: Listeners,
               tokens: Tokens) -> dict[str, str]:
    """Everything a dev server needs beyond tuning: its database, listeners and tokens,
    the simulator as Kaspi and as the acquirers, and /refund open to the simulator."""
    return {"DATABASE_URL": database_url, **listeners.env(), **tokens.env(),
            "KASPI_ALLOWED_NETWORKS": SIMULATOR_NETWORKS, **simulator_env(sim_url)}


def settings_kwargs(env: Mapping[str, str]) -> dict[str, str]:
    """An environment as keyword arguments of Settings or SimulatorSettings (in-process)."""
    return {name.lower(): value for name, value in env.items()}


# ---- the processes ------------------------------------------------------------------

class LaunchError(RuntimeError):
    """A process exited or did not become ready; the message says which, with its log's
    end."""


def send_signal(pid: int | None, sig: signal.Signals) -> None:
    """`sig` to `pid`, if there is one and it still runs."""
    if pid is not None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def answers_200(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


class Processes:
    """The child processes a dev tool started, by name. Each logs to LOG_DIR/NAME.log
    (appended), or without a log folder to the caller's terminal; `stop` ends them all."""

    def __init__(self, log_dir: Path | None = None, *, cwd: Path | None = None,
                 own_session: bool = False) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        # A session of its own: Ctrl-C in the terminal does not reach the child, and
        # `stop` can kill its whole group (a wrapper and what it started).
        self.own_session = own_session
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: Sequence[str],
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`args` with `env` over this process's environment."""
        log = None if self.log_dir is None else (self.log_dir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(list(args), env={**os.environ, **(env or {})},
                                    stdout=log, stderr=None if log is None else subprocess.STDOUT,
                                    cwd=self.cwd, start_new_session=self.own_session)
        finally:
            if log is not None:
                log.close()
        self.procs[name] = proc
        return proc

    def start_simulator(self, env: Mapping[str, str],
                        name: str = "simulator") -> subprocess.Popen[bytes]:
        return self.start(name, [*MPP_SERVER, "simulator"], env)

    def start_server(self, name: str, env: Mapping[str, str],
                     program: Sequence[str] = MPP_SERVER) -> subprocess.Popen[bytes]:
        """`program serve`: `python -m mpp_server serve`, or a wrapper that runs it (the
        benchmark's profiler)."""
        return self.start(name, [*program, "serve"], env)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = None if self.log_dir is None else self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""

    def _exited(self, name: str) -> LaunchError:
        proc = self.procs[name]
        where = f"; its log ends:\n{self.log_tail(name)}" if self.log_dir else ""
        return LaunchError(f"{name} exited with {proc.returncode}{where}")

    def check_running(self, name: str) -> None:
        if self.procs[name].poll() is not None:
            raise self._exited(name)

    def first_exited(self, names: Sequence[str] | None = None) -> str | None:
        return next((name for name in (names or list(self.procs))
                     if self.procs[name].poll() is not None), None)

    def wait_until(self, ready: Callable[[], object], what: str, name: str | None = None,
                   timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll `ready` until it is true; LaunchError when process `name` exits first or
        `timeout_s` passes. An OSError or ValueError from `ready` means not yet."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if name is not None:
                self.check_running(name)
            try:
                if ready():
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        tail = f"; {name}'s log ends:\n{self.log_tail(name)}" if name and self.log_dir else ""
        raise LaunchError(f"not {what} after {timeout_s:.0f} s{tail}")

    def wait_http(self, name: str, url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until `url` answers 200 (`/readyz`, `/sim/healthz`)."""
        self.wait_until(lambda: answers_200(url), f"{url} answering", name, timeout_s)

    def kill(self, name: str) -> None:
        """SIGKILL: the machine lost the process."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0,
             pid_of: Callable[[str], int | None] | None = None) -> None:
        """Every process still running, the last started first: SIGTERM (to `pid_of(name)`
        when given: a wrapper's child), then after `timeout_s` SIGKILL, to the whole
        group of one with a session of its own."""
        names = list(reversed(self.procs))
        for name in names:
            if self.procs[name].poll() is None:
                send_signal(pid_of(name) if pid_of is not None else self.procs[name].pid,
                            signal.SIGTERM)
        for name in names:
            proc = self.procs[name]
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                if self.own_session:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
                proc.wait()

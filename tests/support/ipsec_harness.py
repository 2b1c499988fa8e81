"""A two-namespace IPSec lab: the MPP and Kaspi, each with its own charon, joined by a veth.

    [ns MPP]  inner 198.51.100.1/32                     [ns Kaspi]  inner 203.0.113.1/32
              veth 192.0.2.1/24  <------ IKE/ESP ------>  veth 192.0.2.2/24

Every address is a documentation range and lives only inside the two namespaces: nothing
leaves this machine, and there is no route between the inner addresses except the tunnel.
Facts this relies on (shared/notes/strongswan-on-this-machine.md): no kernel ESP here, so
charon uses kernel-libipsec (a TUN device) loaded before kernel-netlink; one charon per
namespace, each with a private /run (its pid file) and its own vici socket in a temp folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

CHARON = Path("/usr/lib/ipsec/charon")
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")
# openssl provides ECP_256 (DH group 19); the gmp plugin has only MODP groups.
REQUIRED_PLUGINS = ("kernel-libipsec", "kernel-netlink", "openssl", "vici", "socket-default")
CHARON_PLUGINS = ("random nonce openssl aes sha1 sha2 hmac gmp kdf pem pkcs1 x509 pubkey "
                  "kernel-libipsec kernel-netlink socket-default vici")
SWANCTL_PLUGINS = "pem pkcs1 x509 pubkey openssl random nonce"

MPP_OUTER, KASPI_OUTER = "192.0.2.1", "192.0.2.2"
MPP_INNER, KASPI_INNER = "198.51.100.1", "203.0.113.1"
MPP_ID, KASPI_ID = "mpp.example.kz", "kaspi.example.kz"
CONN = "kaspi"

T = TypeVar("T")

STRONGSWAN_CONF = """\
charon {{
    load_modular = no
    load = {plugins}
    # Fail fast in a test: 2 retransmits 1 s apart instead of ~2 minutes.
    retransmit_tries = 2
    retransmit_timeout = 1.0
    retransmit_base = 1.4
    plugins {{
        vici {{
            socket = {vici}
        }}
    }}
    filelog {{
        charon {{
            path = {log}
            time_format = %T
            flush_line = yes
            default = 1
            cfg = 2
        }}
    }}
}}
swanctl {{
    load = {swanctl_plugins}
}}
"""


def missing_prerequisite() -> str | None:
    """Why this machine cannot run the lab, or None when it can."""
    if os.geteuid() != 0:
        return "the IPSec lab needs root (network namespaces, a TUN device)"
    for binary in ("ip", "swanctl", "unshare"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (iproute2, strongswan-swanctl, util-linux)"
    if not os.access(CHARON, os.X_OK):
        return f"{CHARON} is missing (apt-get install strongswan-charon)"
    for plugin in REQUIRED_PLUGINS:
        if not (PLUGIN_DIR / f"libstrongswan-{plugin}.so").exists():
            package = ("libstrongswan-standard-plugins" if plugin == "openssl"
                       else "libcharon-extra-plugins")
            return f"strongSwan plugin {plugin} is missing (apt-get install {package})"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing: kernel-libipsec needs a TUN device"
    probe = f"mpp-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def run(cmd: list[str], *, check: bool = True, timeout_s: float = 30.0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout}{res.stderr}")
    return res


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float,
             interval_s: float = 0.2) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


# ---- swanctl --list-sas, as an operator reads it ------------------------------------------

@dataclass
class ChildSa:
    name: str
    uniqueid: int
    state: str
    proposal: str  # e.g. AES_CBC-256/HMAC_SHA2_256_128/ECP_256
    expires_in_s: int | None = None  # the hard limit still ahead
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass
class IkeSa:
    name: str
    uniqueid: int
    state: str
    proposal: str = ""  # e.g. AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256
    rekey_in_s: int | None = None
    children: list[ChildSa] = field(default_factory=list)


_IKE_RE = re.compile(r"^(\S+): #(\d+), (\w+), IKEv2")
_IKE_PROPOSAL_RE = re.compile(r"^  ([A-Z][A-Z0-9_]*-\d+/\S+)$")
_CHILD_RE = re.compile(r"^  (\S+): #(\d+), reqid \d+, (\w+), \S+, ESP:(\S+)")
_IKE_TIMES_RE = re.compile(r"^  established \d+s ago, rekeying in (-?\d+)s")
_CHILD_TIMES_RE = re.compile(r"^    installed \d+s ago.*, expires in (-?\d+)s")
_BYTES_RE = re.compile(r"^    (in|out) .*?(\d+) bytes")


def parse_list_sas(text: str) -> list[IkeSa]:
    sas: list[IkeSa] = []
    for line in text.splitlines():
        if m := _IKE_RE.match(line):
            sas.append(IkeSa(m[1], int(m[2]), m[3]))
        elif sas and (m := _IKE_PROPOSAL_RE.match(line)):
            sas[-1].proposal = m[1]
        elif sas and (m := _CHILD_RE.match(line)):
            sas[-1].children.append(ChildSa(m[1], int(m[2]), m[3], m[4]))
        elif sas and (m := _IKE_TIMES_RE.match(line)):
            sas[-1].rekey_in_s = int(m[1])
        elif sas and sas[-1].children and (m := _CHILD_TIMES_RE.match(line)):
            sas[-1].children[-1].expires_in_s = int(m[1])
        elif sas and sas[-1].children and (m := _BYTES_RE.match(line)):
            child = sas[-1].children[-1]
            if m[1] == "in":
                child.bytes_in = int(m[2])
            else:
                child.bytes_out = int(m[2])
    return sas


# ---- one charon in one namespace ---------------------------------------------------------

class Charon:
    def __init__(self, netns: str, folder: Path) -> None:
        self.netns = netns
        self.folder = folder
        # A Unix socket path may not exceed 107 bytes; pytest's temp folders can be long.
        self.vici_dir = Path(tempfile.mkdtemp(prefix="mpp-vici-"))
        self.vici = f"unix://{self.vici_dir}/charon.vici"
        self.log = folder / "charon.log"
        self.conf = folder / "strongswan.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(STRONGSWAN_CONF.format(
            plugins=CHARON_PLUGINS, swanctl_plugins=SWANCTL_PLUGINS, vici=self.vici,
            log=self.log))
        # `exec` all the way down: Popen's pid is charon's own, so terminate() reaches it.
        cmd = ["ip", "netns", "exec", self.netns, "unshare", "-m", "--propagation", "private",
               "sh", "-c", f"mount -t tmpfs tmpfs /run && exec {CHARON}"]
        with open(self.folder / "charon.stderr", "wb") as err:
            self.proc = subprocess.Popen(cmd, env=self._env(), stdout=err, stderr=err)
        wait_for(f"charon in {self.netns}", self._ready, timeout_s=10)

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "STRONGSWAN_CONF": str(self.conf)}

    def _ready(self) -> bool | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"charon in {self.netns} exited: {self.log_tail()}")
        if not (self.vici_dir / "charon.vici").exists():
            return None
        return True if self.swanctl("--stats", check=False).returncode == 0 else None

    def swanctl(self, *args: str, check: bool = True,
                timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run(["swanctl", *args, "--uri", self.vici], check=check, timeout_s=timeout_s,
                   env=self._env())

    def load(self, conf_file: Path) -> subprocess.CompletedProcess[str]:
        """`swanctl --load-all --file F`: replaces every connection and secret with F's."""
        return self.swanctl("--load-all", "--noprompt", "--file", str(conf_file))

    def list_sas(self) -> list[IkeSa]:
        return parse_list_sas(self.swanctl("--list-sas").stdout)

    def established(self, name: str = CONN) -> IkeSa | None:
        """The IKE SA `name` once it is ESTABLISHED with an INSTALLED CHILD SA."""
        for sa in self.list_sas():
            if sa.name == name and sa.state == "ESTABLISHED" and any(
                    child.state == "INSTALLED" for child in sa.children):
                return sa
        return None

    def log_tail(self, lines: int = 40) -> str:
        texts = []
        for path in (self.log, self.folder / "charon.stderr"):
            if path.exists():
                texts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(texts)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.vici_dir, ignore_errors=True)


# ---- the two namespaces ------------------------------------------------------------------

@dataclass
class Side:
    netns: str
    outer: str
    inner: str
    charon: Charon


def _setup_netns(name: str, veth: str, outer: str, inner: str) -> None:
    ns = ["ip", "-n", name]
    run([*ns, "addr", "add", f"{outer}/24", "dev", veth])
    run([*ns, "link", "set", veth, "up"])
    # The inner address on a dummy interface, as on a real host; where the kernel has no
    # dummy driver, lo does as well (routing to it is the same).
    if run([*ns, "link", "add", "inner0", "type", "dummy"], check=False).returncode == 0:
        run([*ns, "link", "set", "inner0", "up"])
        run([*ns, "addr", "add", f"{inner}/32", "dev", "inner0"])
    else:
        run([*ns, "addr", "add", f"{inner}/32", "dev", "lo"])


@contextlib.contextmanager
def netns(name: str) -> Iterator[str]:
    """A network namespace with lo up; deleting it deletes its veth ends and dummies too."""
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def running(charon: Charon) -> Iterator[Charon]:
    try:
        charon.start()
        yield charon
    finally:
        charon.stop()


@contextlib.contextmanager
def lone_charon(folder: Path) -> Iterator[Charon]:
    """A charon alone in a namespace: enough to prove swanctl accepts a config."""
    with netns(f"mpp-swan-{os.getpid()}") as name, running(Charon(name, folder)) as charon:
        yield charon


@contextlib.contextmanager
def lab(folder: Path) -> Iterator[tuple[Side, Side]]:
    """Two namespaces with a charon each; everything is torn down on the way out."""
    tag = os.getpid()
    with contextlib.ExitStack() as stack:
        mpp_ns = stack.enter_context(netns(f"mpp-ipsec-{tag}"))
        kaspi_ns = stack.enter_context(netns(f"kaspi-ipsec-{tag}"))
        run(["ip", "-n", mpp_ns, "link", "add", "veth-mpp", "type", "veth",
             "peer", "name", "veth-kaspi", "netns", kaspi_ns])
        _setup_netns(mpp_ns, "veth-mpp", MPP_OUTER, MPP_INNER)
        _setup_netns(kaspi_ns, "veth-kaspi", KASPI_OUTER, KASPI_INNER)
        mpp = Side(mpp_ns, MPP_OUTER, MPP_INNER,
                   stack.enter_context(running(Charon(mpp_ns, folder / "mpp"))))
        kaspi = Side(kaspi_ns, KASPI_OUTER, KASPI_INNER,
                     stack.enter_context(running(Charon(kaspi_ns, folder / "kaspi"))))
        yield mpp, kaspi


# ---- HTTP into a namespace ---------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def connect_in_netns(netns: str, address: tuple[str, int], timeout_s: float) -> socket.socket:
    """A TCP connection made from inside `netns`; the socket works from any thread after.

    setns() moves only the calling thread, so a short-lived thread does it and the test's
    own thread never leaves the host's namespace.
    """
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            with open(f"/run/netns/{netns}") as handle:
                if _libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns {netns}: {os.strerror(errno)}")
            result["sock"] = socket.create_connection(address, timeout=timeout_s)
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    sock: socket.socket = result["sock"]
    return sock


class _NetnsConnection(http.client.HTTPConnection):
    def __init__(self, netns: str, host: str, port: int, timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s)
        self._netns = netns
        self._timeout_s = timeout_s

    def connect(self) -> None:
        self.sock = connect_in_netns(self._netns, (self.host, self.port), self._timeout_s)


def http_json(netns: str, method: str, host_port: str, path: str,
              body: dict[str, Any] | None = None, token: str | None = None,
              timeout_s: float = 15.0) -> tuple[int, Any]:
    host, port = host_port.rsplit(":", 1)
    conn = _NetnsConnection(netns, host, int(port), timeout_s)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw) if raw else None


def spawn_in_netns(netns: str, env: dict[str, str], args: list[str],
                   log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(["ip", "netns", "exec", netns, "env", *(
            f"{key}={value}" for key, value in env.items()), *args],
            stdout=out, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# ---- Kaspi's side of the tunnel: the mirror image of what `ipsec render` writes ----------

KASPI_CONF = """\
connections {{
    {conn} {{
        version = 2
        local_addrs = {kaspi_outer}
        remote_addrs = {mpp_outer}
        proposals = {ike_proposal}
        # Kaspi leaves the rekeying to the partner; 28800 s is its hard CHILD limit.
        rekey_time = 0s
        local {{
            auth = psk
            id = {kaspi_id}
        }}
        remote {{
            auth = psk
            id = {mpp_id}
        }}
        children {{
            {conn} {{
                local_ts = {kaspi_inner}/32
                remote_ts = {mpp_inner}/32
                esp_proposals = aes256-sha256-ecp256
                rekey_time = 0s
                life_time = 28800s
            }}
        }}
    }}
}}
secrets {{
    ike-{conn} {{
        id-kaspi = {kaspi_id}
        id-mpp = {mpp_id}
        secret = "{psk}"
    }}
}}
"""


def write_kaspi_conf(path: Path, psk: str, ike_proposal: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(KASPI_CONF.format(
        conn=CONN, kaspi_outer=KASPI_OUTER, mpp_outer=MPP_OUTER, kaspi_id=KASPI_ID,
        mpp_id=MPP_ID, kaspi_inner=KASPI_INNER, mpp_inner=MPP_INNER, psk=psk,
        ike_proposal=ike_proposal))
    return path

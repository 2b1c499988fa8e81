"""`ipsec render`: the regulation's crypto and lifetimes, input validation, and the files."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mpp_server import ipsec
from mpp_server.ipsec import swanctl as r
from tests.support import ipsec_harness as lab

REPO = Path(__file__).resolve().parents[2]
PSK = "kaspi-sms-psk-0123456789"

GOOD = {
    "--local-addr": "192.0.2.1",
    "--remote-addr": "192.0.2.2",
    "--local-ts": "198.51.100.0/28,198.51.100.64/32",
    "--remote-ts": "203.0.113.0/24",
    "--local-id": "mpp.example.kz",
    "--remote-id": "192.0.2.2",
}


def _argv(folder: Path, psk: str = PSK, **overrides: str) -> list[str]:
    psk_file = folder / "psk.txt"
    if not psk_file.exists():
        psk_file.write_text(psk)
    flags = {**GOOD, "--psk-file": str(psk_file), "--out": str(folder / "kaspi.conf")}
    flags |= {f"--{key.replace('_', '-')}": value for key, value in overrides.items()}
    return ["render", *(item for pair in flags.items() for item in pair)]


def _settings(conf: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s*(\w+) = (.*)$", conf, flags=re.MULTILINE)


def _rendered(tmp_path: Path) -> tuple[str, str]:
    assert ipsec.main(_argv(tmp_path)) == 0
    return (tmp_path / "kaspi.conf").read_text(), (tmp_path / "kaspi.secrets").read_text()


def test_rendered_proposals_are_exactly_the_regulations(tmp_path: Path) -> None:
    conf, _ = _rendered(tmp_path)
    settings = _settings(conf)

    assert [v for k, v in settings if k == "proposals"] == ["aes256-sha256-prfsha256-ecp256"]
    assert [v for k, v in settings if k == "esp_proposals"] == ["aes256-sha256-ecp256"]
    assert ("version", "2") in settings
    assert [v for k, v in settings if k == "auth"] == ["psk", "psk"]


def test_lifetimes_stay_within_the_regulations_hard_limits(tmp_path: Path) -> None:
    conf, _ = _rendered(tmp_path)
    ike_block, child_block = conf.split("children {", 1)
    ike = {k: int(v.removesuffix("s")) for k, v in _settings(ike_block) if v.endswith("s")
           and v[:-1].isdigit()}
    child = {k: int(v.removesuffix("s")) for k, v in _settings(child_block)
             if v.endswith("s") and v[:-1].isdigit()}

    # IKE: the SA is closed at most over_time after its (randomly earlier) rekey time.
    assert ike["rekey_time"] + ike["over_time"] <= 86400
    assert ike["rekey_time"] - ike["rand_time"] > 0
    assert ike["reauth_time"] == 0
    assert ike["dpd_delay"] > 0
    # CHILD: life_time is the hard limit; rekey starts before it.
    assert child["life_time"] == 28800
    assert 0 < child["rekey_time"] - child["rand_time"] < child["rekey_time"] < 28800
    # No volume lifetime in §1.10.
    volume = {"life_bytes", "life_packets", "rekey_bytes", "rekey_packets"}
    assert not volume & {key for key, _ in _settings(conf)}


def test_psk_goes_only_into_a_0600_secrets_file_that_the_config_includes(
        tmp_path: Path) -> None:
    assert ipsec.main(_argv(tmp_path, psk=f"  {PSK}\n\n")) == 0

    conf = (tmp_path / "kaspi.conf").read_text()
    secrets_path = tmp_path / "kaspi.secrets"
    secrets = secrets_path.read_text()
    assert stat.S_IMODE(secrets_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "kaspi.conf").stat().st_mode) == 0o644
    assert re.search(r"^include kaspi\.secrets$", conf, flags=re.MULTILINE)
    assert PSK not in conf and PSK.encode().hex() not in conf
    assert f"secret = 0x{PSK.encode().hex()}\n" in secrets  # stripped, then hex-encoded
    assert "id-local = mpp.example.kz" in secrets and "id-remote = 192.0.2.2" in secrets
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kaspi.conf", "kaspi.secrets",
                                                         "psk.txt"]


def test_inputs_are_normalised_into_the_config(tmp_path: Path) -> None:
    argv = _argv(tmp_path, local_addr="2001:DB8::1", remote_addr="2001:db8:0::2",
                 remote_ts="203.0.113.0/24, 2001:db8:1::/48", name="kaspi_alm")
    assert ipsec.main(argv) == 0
    settings = dict(_settings((tmp_path / "kaspi.conf").read_text()))

    assert settings["local_addrs"] == "2001:db8::1"
    assert settings["remote_addrs"] == "2001:db8::2"
    assert settings["local_ts"] == "198.51.100.0/28,198.51.100.64/32"
    assert settings["remote_ts"] == "203.0.113.0/24,2001:db8:1::/48"
    assert "    kaspi_alm {" in (tmp_path / "kaspi.conf").read_text()


BAD_INPUT = [
    ({"local_addr": "192.0.2.300"}, "--local-addr"),
    ({"remote_addr": "kaspi.kz"}, "--remote-addr"),
    ({"remote_addr": "0.0.0.0"}, "--remote-addr"),
    ({"remote_addr": "192.0.2.1"}, "same address"),
    ({"local_ts": "198.51.100.1/24"}, "--local-ts"),  # host bits set: a typo
    ({"local_ts": "198.51.100.0/33"}, "--local-ts"),
    ({"local_ts": "198.51.100.0/24,"}, "--local-ts"),
    ({"remote_ts": "0.0.0.0/0"}, "--remote-ts"),
    ({"remote_ts": "203.0.113.0/24 }"}, "--remote-ts"),
    ({"remote_ts": "198.51.100.0/24"}, "overlaps"),
    ({"local_id": "mpp server"}, "--local-id"),
    ({"local_id": 'mpp"x'}, "--local-id"),
    ({"local_id": "mpp}"}, "--local-id"),
    ({"local_id": "mpp{x"}, "--local-id"),
    ({"local_id": "mpp#x"}, "--local-id"),
    ({"local_id": "CN=mpp"}, "--local-id"),
    ({"remote_id": "kaspi.kz\n}"}, "--remote-id"),
    ({"remote_id": ""}, "--remote-id"),
    ({"remote_id": "mpp.example.kz"}, "same identity"),
    ({"name": "Kaspi Tunnel"}, "--name"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUT)
def test_bad_input_exits_non_zero_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: dict[str, str],
        message: str) -> None:
    assert ipsec.main(_argv(tmp_path, **overrides)) == 2

    err = capsys.readouterr().err
    assert message in err and "nothing written" in err
    assert [p.name for p in tmp_path.iterdir()] == ["psk.txt"]


@pytest.mark.parametrize(("psk", "message"), [
    ("", "empty"),
    (" \n\t\n", "empty"),
    ("short-psk-123", "at least 16"),
    ("sixteen-chars-\x07!", "control characters"),
    ("line-one-psk-abcdef\nline-two", "control characters"),
    ("x" * 300, "longer than"),
])
def test_weak_or_malformed_psk_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          psk: str, message: str) -> None:
    assert ipsec.main(_argv(tmp_path, psk=psk)) == 2

    assert message in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["psk.txt"]


def test_missing_psk_file_or_out_folder_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ipsec.main(_argv(tmp_path, psk_file=str(tmp_path / "nope.txt"))) == 2
    assert "cannot read" in capsys.readouterr().err
    assert ipsec.main(_argv(tmp_path, out=str(tmp_path / "missing" / "kaspi.conf"))) == 2
    assert "does not exist" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["psk.txt"]


def test_rendering_again_replaces_both_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    assert ipsec.main(_argv(tmp_path)) == 0
    (tmp_path / "psk.txt").write_text("a-rotated-psk-0123456789")
    assert ipsec.main(_argv(tmp_path)) == 0

    assert "0x" + b"a-rotated-psk-0123456789".hex() in (tmp_path / "kaspi.secrets").read_text()
    assert stat.S_IMODE((tmp_path / "kaspi.secrets").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kaspi.conf", "kaspi.secrets",
                                                         "psk.txt"]


def test_a_failed_write_leaves_no_temporaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mpp_server.ipsec.files.os.replace", full_disk)
    assert ipsec.main(_argv(tmp_path)) == 2

    assert "No space left" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["psk.txt"]


def test_help_lists_the_contract_flags() -> None:
    res = subprocess.run([sys.executable, "-m", "mpp_server", "ipsec", "render", "--help"],
                         capture_output=True, text=True, cwd=REPO, timeout=30)
    assert res.returncode == 0
    for flag in ("--local-addr", "--remote-addr", "--local-ts", "--remote-ts", "--local-id",
                 "--remote-id", "--psk-file", "--out"):
        assert flag in res.stdout


def test_example_in_the_repository_is_what_render_writes() -> None:
    """ipsec/swanctl.conf.example is documentation; it must not drift from the code."""
    params = r.parse_params(
        name="kaspi", local_addr="192.0.2.1", remote_addr="192.0.2.2",
        local_ts="198.51.100.0/28", remote_ts="203.0.113.0/24", local_id="mpp.example.kz",
        remote_id="kaspi.example.kz", psk_text=PSK, secrets_file="kaspi.secrets")
    conf, _ = r.render(params)
    assert (REPO / "ipsec" / "swanctl.conf.example").read_text() == conf


def test_swanctl_loads_the_rendered_files(tmp_path: Path) -> None:
    """charon's own parser accepts the config, the include and a PSK full of syntax."""
    reason = lab.missing_prerequisite()
    if reason is not None:
        print(f"\nSKIPPED {reason}")
        pytest.skip(reason)
    assert ipsec.main(_argv(tmp_path, psk='p"s}k{ #x=y;\\ 0s0x-end')) == 0

    with lab.lone_charon(tmp_path / "charon") as charon:
        loaded = charon.load(tmp_path / "kaspi.conf")
        conns = charon.swanctl("--list-conns").stdout

    assert "loaded ike secret 'ike-kaspi'" in loaded.stdout
    assert "loaded connection 'kaspi'" in loaded.stdout
    assert "IKEv2, no reauthentication, rekeying every 82800s, dpd delay 30s" in conns
    assert "kaspi: TUNNEL, rekeying every 25200s" in conns
    assert "remote: 203.0.113.0/24" in conns

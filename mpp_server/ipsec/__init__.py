"""`python -m mpp_server ipsec render ...`: the strongSwan config of the tunnel to Kaspi Pay.

See ipsec/README.md for the operator's runbook; the crypto and lifetimes come from the
regulation (§1.10) and live in swanctl.py, not in flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpp_server.ipsec.files import secrets_path_for, write_pair
from mpp_server.ipsec.swanctl import MIN_PSK_CHARS, RenderError, parse_params, render

MAX_PSK_FILE_BYTES = 4096


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server ipsec",
        description="strongSwan (swanctl) configuration of the IPSec tunnel to Kaspi Pay.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = commands.add_parser(
        "render", help="write swanctl.conf and its 0600 secrets file for one partner",
        description="Write a ready swanctl.conf to --out and the PSK into a 0600 secrets file "
                    "beside it (same name, suffix .secrets) that the config includes. Bad input "
                    "exits non-zero and writes nothing.")
    cmd.add_argument("--local-addr", required=True, metavar="IP",
                     help="this server's outer (public) address, the IKE endpoint")
    cmd.add_argument("--remote-addr", required=True, metavar="IP",
                     help="Kaspi's outer address (the peer)")
    cmd.add_argument("--local-ts", required=True, metavar="CIDR[,CIDR...]",
                     help="our encryption domain: the inner networks on our side")
    cmd.add_argument("--remote-ts", required=True, metavar="CIDR[,CIDR...]",
                     help="Kaspi's encryption domain: the inner networks on Kaspi's side")
    cmd.add_argument("--local-id", required=True, metavar="ID",
                     help="our IKE identity: an IP address, FQDN or email address")
    cmd.add_argument("--remote-id", required=True, metavar="ID",
                     help="Kaspi's IKE identity: an IP address, FQDN or email address")
    cmd.add_argument("--psk-file", required=True, metavar="PATH", type=Path,
                     help=f"file holding the pre-shared key (at least {MIN_PSK_CHARS} "
                          "characters; surrounding whitespace is stripped)")
    cmd.add_argument("--out", required=True, metavar="FILE", type=Path,
                     help="the swanctl.conf to write, e.g. /etc/swanctl/conf.d/kaspi.conf")
    cmd.add_argument("--name", default="kaspi",
                     help="connection and CHILD SA name (default: kaspi)")
    return parser


def _read_psk(path: Path) -> str:
    try:
        with path.open("rb") as src:
            data = src.read(MAX_PSK_FILE_BYTES + 1)
    except OSError as exc:
        raise RenderError(f"--psk-file: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_PSK_FILE_BYTES:
        raise RenderError(f"--psk-file: {path} is larger than {MAX_PSK_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(f"--psk-file: {path} is not UTF-8 text") from None


def _render_command(args: argparse.Namespace) -> int:
    out: Path = args.out
    secrets = secrets_path_for(out)
    if not out.parent.is_dir():
        raise RenderError(f"--out: the folder {out.parent} does not exist")
    if out.suffix == ".secrets" or out.is_dir():
        raise RenderError(f"--out: {out} must be a file name like kaspi.conf")
    params = parse_params(
        name=args.name, local_addr=args.local_addr, remote_addr=args.remote_addr,
        local_ts=args.local_ts, remote_ts=args.remote_ts, local_id=args.local_id,
        remote_id=args.remote_id, psk_text=_read_psk(args.psk_file),
        secrets_file=secrets.name)
    conf_text, secrets_text = render(params)
    try:
        write_pair(out, conf_text, secrets, secrets_text)
    except OSError as exc:
        raise RenderError(f"--out: cannot write {out}: {exc}") from None
    print(f"wrote {out} and {secrets} (0600); load them with `swanctl --load-all`")
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _render_command(args)
    except RenderError as exc:
        print(f"ipsec render: {exc}; nothing written", file=sys.stderr)
        return 2

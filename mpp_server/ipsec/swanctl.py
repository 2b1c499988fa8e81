"""Render the strongSwan swanctl.conf (and its secrets file) for the tunnel to Kaspi Pay.

Everything a partner may vary (addresses, encryption domains, identities, the PSK) is
validated here before it reaches the config text, because swanctl.conf is a brace-structured
format: a value with whitespace, a quote, `{`, `}` or `#` in it could open a section, end one,
or comment out the rest of the line. The crypto is not a parameter: the regulation (§1.10)
fixes it, and a weaker fallback proposal would establish silently (see PROPOSALS below).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# §1.10, Phase 1: IKEv2, AES-256, SHA-256 integrity, PRF SHA-256, DH group 19 (ECP-256).
IKE_PROPOSAL = "aes256-sha256-prfsha256-ecp256"
# §1.10, Phase 2: ESP AES-256 / SHA-256 with PFS group 19. The `-ecp256` is what demands PFS
# at every CHILD rekey; the first CHILD SA (negotiated in IKE_AUTH) never carries a DH group.
ESP_PROPOSAL = "aes256-sha256-ecp256"

# §1.10 lifetimes are hard limits on Kaspi's side, so our rekeys start well before them.
# IKE: rekey at IKE_REKEY_S minus a random share of up to IKE_RAND_S; the SA is closed at the
# latest IKE_OVER_S after the (randomised) rekey time, so its hard life is at most
# IKE_REKEY_S + IKE_OVER_S = 86400 s.
IKE_LIFETIME_S = 86400
IKE_REKEY_S = 82800
IKE_OVER_S = 3600
IKE_RAND_S = 1800
# CHILD: the hard life is life_time itself; rekeying starts between 6.5 h and 7 h.
CHILD_LIFETIME_S = 28800
CHILD_REKEY_S = 25200
CHILD_RAND_S = 1800
DPD_DELAY_S = 30

MIN_PSK_CHARS = 16
MAX_PSK_CHARS = 256
MAX_TS_PER_SIDE = 32
MAX_ID_CHARS = 253

assert IKE_REKEY_S + IKE_OVER_S <= IKE_LIFETIME_S
assert CHILD_REKEY_S < CHILD_LIFETIME_S and CHILD_REKEY_S - CHILD_RAND_S > 0

_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_EMAIL_LOCAL_RE = re.compile(r"[A-Za-z0-9._+-]{1,64}")


class RenderError(ValueError):
    """Bad input for `ipsec render`; the message names the flag and what is wrong."""


@dataclass(frozen=True)
class TunnelParams:
    """One partner's tunnel, already validated (build it with `parse_params`)."""

    name: str
    local_addr: str
    remote_addr: str
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    local_id: str
    remote_id: str
    psk: str
    secrets_file: str  # the secrets file's name, beside the config that includes it


def parse_ip(flag: str, value: str) -> str:
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise RenderError(f"{flag}: {value!r} is not an IPv4 or IPv6 address") from None
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback:
        raise RenderError(f"{flag}: {value!r} cannot be a tunnel endpoint")
    return str(addr)


def parse_cidrs(flag: str, value: str) -> tuple[str, ...]:
    """`10.0.0.0/24,10.1.0.5/32` -> canonical networks; a set host bit is a typo, refused."""
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise RenderError(f"{flag}: expected CIDR[,CIDR...], got {value!r}")
    if len(items) > MAX_TS_PER_SIDE:
        raise RenderError(f"{flag}: at most {MAX_TS_PER_SIDE} networks, got {len(items)}")
    networks: list[str] = []
    for item in items:
        try:
            net = ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            raise RenderError(f"{flag}: {item!r} is not a network in CIDR form ({exc})") from None
        if net.prefixlen == 0:
            raise RenderError(f"{flag}: {item!r} would send all traffic into the tunnel")
        if str(net) not in networks:
            networks.append(str(net))
    return tuple(networks)


def _is_fqdn(value: str) -> bool:
    labels = value.rstrip(".").split(".")
    return len(value) <= MAX_ID_CHARS and all(_LABEL_RE.fullmatch(label) for label in labels)


def parse_identity(flag: str, value: str) -> str:
    """An IKE identity: an IP address, an FQDN or an email address (RFC822 name).

    Anything else is refused, in particular whitespace, quotes, braces, `#` and `=`: in
    swanctl.conf they would inject config, and strongSwan reads `=` as a distinguished name.
    """
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    local, at, domain = value.partition("@")
    if at and _EMAIL_LOCAL_RE.fullmatch(local) and _is_fqdn(domain):
        return value
    if not at and value and _is_fqdn(value):
        return value
    raise RenderError(f"{flag}: {value!r} is not an IP address, a domain name or an email address")


def parse_psk(text: str) -> str:
    psk = text.strip()
    if not psk:
        raise RenderError("--psk-file: the file is empty")
    if len(psk) < MIN_PSK_CHARS:
        raise RenderError(f"--psk-file: the PSK has {len(psk)} characters, "
                          f"at least {MIN_PSK_CHARS} are required")
    if len(psk) > MAX_PSK_CHARS:
        raise RenderError(f"--psk-file: the PSK is longer than {MAX_PSK_CHARS} characters")
    if not psk.isprintable():
        raise RenderError("--psk-file: the PSK contains control characters or line breaks")
    return psk


def parse_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise RenderError(f"--name: {value!r} must match [a-z][a-z0-9_-]{{0,31}}")
    return value


def parse_params(*, name: str, local_addr: str, remote_addr: str, local_ts: str,
                 remote_ts: str, local_id: str, remote_id: str, psk_text: str,
                 secrets_file: str) -> TunnelParams:
    params = TunnelParams(
        name=parse_name(name),
        local_addr=parse_ip("--local-addr", local_addr),
        remote_addr=parse_ip("--remote-addr", remote_addr),
        local_ts=parse_cidrs("--local-ts", local_ts),
        remote_ts=parse_cidrs("--remote-ts", remote_ts),
        local_id=parse_identity("--local-id", local_id),
        remote_id=parse_identity("--remote-id", remote_id),
        psk=parse_psk(psk_text),
        secrets_file=secrets_file,
    )
    if params.local_addr == params.remote_addr:
        raise RenderError("--local-addr and --remote-addr are the same address")
    if params.local_id == params.remote_id:
        raise RenderError("--local-id and --remote-id are the same identity")
    _check_disjoint(params.local_ts, params.remote_ts)
    return params


def _check_disjoint(local_ts: tuple[str, ...], remote_ts: tuple[str, ...]) -> None:
    for local in local_ts:
        for remote in remote_ts:
            if _overlap(ipaddress.ip_network(local), ipaddress.ip_network(remote)):
                raise RenderError(f"--local-ts {local} overlaps --remote-ts {remote}")


def _overlap(a: ipaddress.IPv4Network | ipaddress.IPv6Network,
             b: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if isinstance(a, ipaddress.IPv4Network) and isinstance(b, ipaddress.IPv4Network):
        return a.overlaps(b)
    if isinstance(a, ipaddress.IPv6Network) and isinstance(b, ipaddress.IPv6Network):
        return a.overlaps(b)
    return False


CONF_TEMPLATE = """\
# strongSwan swanctl.conf: the IPSec tunnel to Kaspi Pay (regulation §1.10).
# Generated by `python -m mpp_server ipsec render`; edit the flags and render again rather
# than this file. The PSK is in {secrets_file} (mode 0600), included at the end.
connections {{
    {name} {{
        version = 2
        local_addrs = {local_addr}
        remote_addrs = {remote_addr}
        # §1.10 Phase 1, and nothing weaker: a fallback proposal would be accepted silently.
        proposals = {ike_proposal}
        # §1.10: the IKE SA lives at most {ike_lifetime_s} s. Rekey (in place, no outage) starts
        # {ike_rekey_s} s minus up to {ike_rand_s} s after establishment; if it has not completed
        # {ike_over_s} s later the SA is closed: {ike_rekey_s} + {ike_over_s} = {ike_lifetime_s}.
        rekey_time = {ike_rekey_s}s
        rand_time = {ike_rand_s}s
        over_time = {ike_over_s}s
        # No re-authentication: with a PSK it proves nothing a rekey does not, and IKEv2
        # reauthentication tears the CHILD SAs down while it rebuilds them.
        reauth_time = 0s
        # Dead peer detection: an idle tunnel is probed every {dpd_delay_s} s; the retransmission
        # schedule in strongswan.conf decides when the peer is declared dead.
        dpd_delay = {dpd_delay_s}s
        # Kaspi's endpoint is a fixed address; MOBIKE would only complicate its firewall.
        mobike = no
        # Keep trying to reach Kaspi forever: payments need the tunnel up.
        keyingtries = 0
        unique = replace
        local {{
            auth = psk
            id = {local_id}
        }}
        remote {{
            auth = psk
            id = {remote_id}
        }}
        children {{
            {name} {{
                mode = tunnel
                local_ts = {local_ts}
                remote_ts = {remote_ts}
                # §1.10 Phase 2 with PFS group 19: the DH group is negotiated at every CHILD
                # rekey (the first CHILD SA is keyed from the IKE SA and shows no group).
                esp_proposals = {esp_proposal}
                # §1.10: the CHILD SA lives at most {child_lifetime_s} s (a hard limit); rekey
                # starts {child_rekey_s} s minus up to {child_rand_s} s after installation.
                # No volume lifetime (life_bytes/life_packets stay unset, i.e. none).
                rekey_time = {child_rekey_s}s
                rand_time = {child_rand_s}s
                life_time = {child_lifetime_s}s
                # Bring the tunnel up when the config is loaded, and bring it back when Kaspi
                # closes it or stops answering DPD.
                start_action = start
                dpd_action = restart
                close_action = start
            }}
        }}
    }}
}}

include {secrets_file}
"""

SECRETS_TEMPLATE = """\
# The PSK of the {name} tunnel (Kaspi sends it by SMS). Keep this file mode 0600, out of
# version control and out of backups that are not encrypted. Hex-encoded so that no
# character of the key can break the file's syntax.
secrets {{
    ike-{name} {{
        id-local = {local_id}
        id-remote = {remote_id}
        secret = 0x{psk_hex}
    }}
}}
"""


def render(params: TunnelParams) -> tuple[str, str]:
    """The swanctl.conf text and the secrets text that it includes."""
    conf = CONF_TEMPLATE.format(
        name=params.name,
        local_addr=params.local_addr,
        remote_addr=params.remote_addr,
        local_ts=",".join(params.local_ts),
        remote_ts=",".join(params.remote_ts),
        local_id=params.local_id,
        remote_id=params.remote_id,
        secrets_file=params.secrets_file,
        ike_proposal=IKE_PROPOSAL,
        esp_proposal=ESP_PROPOSAL,
        ike_lifetime_s=IKE_LIFETIME_S,
        ike_rekey_s=IKE_REKEY_S,
        ike_over_s=IKE_OVER_S,
        ike_rand_s=IKE_RAND_S,
        child_lifetime_s=CHILD_LIFETIME_S,
        child_rekey_s=CHILD_REKEY_S,
        child_rand_s=CHILD_RAND_S,
        dpd_delay_s=DPD_DELAY_S,
    )
    secrets = SECRETS_TEMPLATE.format(
        name=params.name,
        local_id=params.local_id,
        remote_id=params.remote_id,
        psk_hex=params.psk.encode().hex(),
    )
    return conf, secrets

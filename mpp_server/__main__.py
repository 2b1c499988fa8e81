"""`python -m mpp_server SUBCOMMAND ...`: one entry point for every process we run.

Each subcommand lives in its own module and takes its own arguments; this file only
dispatches, so `--help` stays cheap (no module is imported until it is needed).
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with `main(argv) -> int`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("mpp_server.serve",
              "run the wallet, Kaspi-facing, acquiring and console listeners"),
    "migrate": ("mpp_server.migrate", "apply sql/migrations and sql/functions to DATABASE_URL"),
    "simulator": ("mpp_server.devtools.simulator.cli",
                  "run the Kaspi simulator (SIMULATOR_LISTEN)"),
    "ipsec": ("mpp_server.ipsec", "render the strongSwan swanctl.conf for one partner"),
    "reconcile": ("mpp_server.reconcile.cli", "reconcile the books against a Kaspi registry"),
    "operators": ("mpp_server.console.operators_cli",
                  "add, disable, unlock and list the console's operators"),
    "audit": ("mpp_server.console.audit_cli", "verify the console's audit journal"),
    "stack": ("mpp_server.devtools.stack", "the whole stack on one machine (make run)"),
    "ha": ("mpp_server.devtools.ha",
           "etcd, Patroni-managed PostgreSQL, HAProxy and N servers (make ha)"),
    "devdb": ("mpp_server.devtools.devdb",
              "start the private PostgreSQL in .data/pg and print its DSN"),
    "openapi": ("mpp_server.http.openapi", "print the OpenAPI description"),
    "webhooks": ("mpp_server.webhooks.cli",
                 "webhook deliveries to WEBHOOK_URL: replay one, list them"),
    "disputes": ("mpp_server.disputes_cli",
                 "customers' disputes: resolve one (an operator), list the open ones"),
    "backup-drill": ("mpp_server.devtools.backup_drill",
                     "prove a point-in-time restore with pgBackRest (make backup-drill)"),
}


def usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: python -m mpp_server SUBCOMMAND [options]", "", "subcommands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "`python -m mpp_server SUBCOMMAND --help` for a subcommand's options"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())

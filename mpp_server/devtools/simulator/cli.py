"""`python -m mpp_server simulator [--listen HOST:PORT]`: the Kaspi simulator in the
foreground. Settings come from the environment (docs/simulator.md); logs are JSON lines
on stderr; SIGINT and SIGTERM stop it cleanly."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import pydantic
from aiohttp import web

from mpp_server.config import parse_listen
from mpp_server.devtools.simulator.app import create_app
from mpp_server.devtools.simulator.settings import SimulatorSettings
from mpp_server.logs import setup_logging


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server simulator",
        description="Run the Kaspi Pay simulator (Kaspi's MPP API plus /sim control API). "
                    "Settings: SIMULATOR_LISTEN, SIM_CALLER_NAMES, SIM_MPP_REFUND_URL, "
                    "SIM_FEE_PERCENT, SIM_DEFAULT_TTL_SECONDS, SIM_REGISTRY_TZ, ... "
                    "(docs/simulator.md).")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="listen address (default: SIMULATOR_LISTEN or 127.0.0.1:8090)")
    parser.add_argument("--access-log", action="store_true",
                        help="log every request (SIM_ACCESS_LOG)")
    args = parser.parse_args(argv)
    try:
        settings = SimulatorSettings()
        if args.listen:
            settings = settings.model_copy(update={"simulator_listen": args.listen})
        host, port = parse_listen(settings.simulator_listen)
    except (pydantic.ValidationError, ValueError) as exc:
        print(f"simulator: bad settings: {exc}", file=sys.stderr)
        return 2
    setup_logging("INFO")
    access = args.access_log or settings.sim_access_log
    if access:
        logging.getLogger("aiohttp.access").setLevel(logging.INFO)
    log = logging.getLogger("mpp_server.devtools.simulator")
    log.info("simulator starting", extra={"listen": f"{host}:{port}",
                                          "tlsListen": settings.sim_tls_listen
                                          if settings.tls_context() else None,
                                          "mppRefundUrl": settings.sim_mpp_refund_url})
    loop = _event_loop()
    try:
        loop.run_until_complete(_serve(settings, host, port, access))
    finally:
        loop.close()
    log.info("simulator stopped")
    return 0


async def _serve(settings: SimulatorSettings, host: str, port: int, access: bool) -> None:
    """The plain listener, and the TLS one of the mutual-TLS gateways when configured,
    until SIGINT or SIGTERM."""
    runner = web.AppRunner(create_app(settings), shutdown_timeout=5,
                           access_log=logging.getLogger("aiohttp.access") if access else None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        tls = settings.tls_context()
        if tls is not None:
            tls_host, tls_port = parse_listen(settings.sim_tls_listen)
            await web.TCPSite(runner, tls_host, tls_port, ssl_context=tls).start()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()

"""The fake card acquirers (top-ups, docs/topups.md): Halyk ePay at /halyk-epay, Kapital
Bank's TKKPG gateway at /kapital, Kaspi e-commerce at /kaspi-ecom, each speaking its
seed's format, and their control API under /sim/acquiring."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from mpp_server.devtools.simulator.acquirers import control, halyk_epay, kapital, kaspi_ecom
from mpp_server.devtools.simulator.acquirers.state import ACQUIRING, AcquiringState, late_answers

MAX_CALLBACK_CONNECTIONS = 100


def add_routes(app: web.Application) -> None:
    app[ACQUIRING] = AcquiringState()
    app.middlewares.append(late_answers)
    halyk_epay.add_routes(app)
    kapital.add_routes(app)
    kaspi_ecom.add_routes(app)
    control.add_routes(app)
    app.on_shutdown.append(_stop)
    app.cleanup_ctx.append(_callback_client)


async def _stop(app: web.Application) -> None:
    app[ACQUIRING].stopping.set()


async def _callback_client(app: web.Application) -> AsyncIterator[None]:
    state = app[ACQUIRING]
    connector = aiohttp.TCPConnector(limit=MAX_CALLBACK_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        state.session = session
        yield
        state.session = None

"""The fake card acquirers (top-ups, docs/topups.md), each after its gateway's own
documentation: Halyk ePay at /halyk-epay (OAuth host, API, payment script), Kapital Bank's
TWPG at /kapital/Exec (the TLS listener, mutual TLS), Kaspi Pay's QR API at
/kaspi-qr/{r1,r2,r3}/v01; and their control API under /sim/acquiring."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from mpp_server.devtools.simulator.acquirers import control, halyk_epay, kapital, kaspi_ecom
from mpp_server.devtools.simulator.acquirers.state import ACQUIRING, AcquiringState, late_answers
from mpp_server.devtools.simulator.context import SIM

MAX_CALLBACK_CONNECTIONS = 100


def add_routes(app: web.Application) -> None:
    app[ACQUIRING] = AcquiringState(kapital_currencies=app[SIM].settings.kapital_currencies)
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

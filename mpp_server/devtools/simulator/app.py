"""The simulator's application factory: `create_app(settings)`; routes live in
fake_qr_api.py (what the MPP calls) and control.py (what tests call)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from mpp_server.devtools.simulator import acquirers, control, fake_qr_api
from mpp_server.devtools.simulator.context import SIM, Simulator
from mpp_server.devtools.simulator.refunds import RefundCaller
from mpp_server.devtools.simulator.settings import SimulatorSettings
from mpp_server.devtools.simulator.state import SimState

# Connections to the MPP's /refund at once; more concurrent refunds wait for one.
MAX_REFUND_CONNECTIONS = 100


def create_app(settings: SimulatorSettings | None = None) -> web.Application:
    settings = settings or SimulatorSettings()
    app = web.Application(client_max_size=settings.sim_max_body_bytes)
    app[SIM] = Simulator(settings=settings, state=SimState(settings))
    fake_qr_api.add_routes(app)
    control.add_routes(app)
    acquirers.add_routes(app)
    app.on_shutdown.append(_stop_waiting)
    app.cleanup_ctx.append(_refund_client)
    return app


async def _stop_waiting(app: web.Application) -> None:
    app[SIM].stopping.set()


async def _refund_client(app: web.Application) -> AsyncIterator[None]:
    sim = app[SIM]
    connector = aiohttp.TCPConnector(limit=MAX_REFUND_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        sim.caller = RefundCaller(sim.settings, sim.faults, session)
        yield
        sim.stopping.set()
        tasks = list(sim.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sim.caller = None

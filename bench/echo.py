"""`python -m bench.echo PORT`: the benchmark's yardstick, an aiohttp server that answers
a JSON POST to /echo with the same JSON. Driven by the same load generator as the
payments, its rate is what one HTTP exchange costs on this machine in the same run
(docs/performance.md compares runs by payments / echo)."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from mpp_server.serve import loop_factory


async def echo(request: web.Request) -> web.Response:
    return web.json_response(await request.json())


def main() -> None:
    app = web.Application()
    app.router.add_post("/echo", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                loop=(loop_factory() or asyncio.new_event_loop)())  # as the server runs


if __name__ == "__main__":
    main()

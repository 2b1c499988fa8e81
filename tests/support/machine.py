"""The base of the stateful hypothesis machines that drive the server's SQL steps on a
real PostgreSQL (pgledger's way): one event loop and one connection per example, with
the server's jsonb codec."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from hypothesis.stateful import RuleBasedStateMachine


class DatabaseMachine(RuleBasedStateMachine):
    dsn: str = ""  # set by the test before it runs the machine

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.run(asyncpg.connect(self.dsn))
        self.run(self.conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                          schema="pg_catalog"))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.conn.close())
        self.loop.close()

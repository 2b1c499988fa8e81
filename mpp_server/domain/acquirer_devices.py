"""The device an acquirer takes payments from (Kaspi's QR API: a device registered for
the trade point, its DeviceToken sent with every payment link; docs/topups.md): registered
once per trade point and kept in acquirer_devices, by one process at a time under a lease
committed before the call (sql/functions/acquirer_devices.sql), no connection held across
it. Registration happens when the first top-up needs the token, and again when the
acquirer says it no longer knows the device."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from mpp_server.acquirers.base import AcquirerNoAnswer, Provider
from mpp_server.domain.outcomes import DeviceOutcome

# How often a caller waiting for another's registration looks again.
POLL_S = 0.05


class DeviceRegistry:
    """acquirers.base.DeviceTokens for one provider's trade point."""

    def __init__(self, pool: asyncpg.Pool, provider: Provider, trade_point_id: str,
                 lease_s: float) -> None:
        self._pool = pool
        self._provider = provider.value
        self._trade_point = trade_point_id
        self._lease_s = lease_s
        self._token: str | None = None

    async def token(self, register: Callable[[str], Awaitable[str]]) -> str:
        """The device's token; registered first (`register(device_id)` calls the
        acquirer) when none is kept."""
        if self._token is not None:
            return self._token
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lease_s
        while True:
            async with self._pool.acquire() as conn:
                claimed = await conn.fetchrow(
                    "SELECT a.outcome, (a.device).* FROM acquirer_device_claim($1, $2, $3) a",
                    self._provider, self._trade_point, self._lease_s)
            assert claimed is not None
            outcome = DeviceOutcome(claimed["outcome"])
            if outcome is DeviceOutcome.REGISTERED:
                self._token = str(claimed["device_token"])
                return self._token
            if outcome is DeviceOutcome.CLAIMED:
                return await self._register(register, claimed["attempts"])
            if loop.time() >= deadline:
                raise AcquirerNoAnswer("DEVICE_BUSY", "another process registers the device")
            await asyncio.sleep(POLL_S)

    async def _register(self, register: Callable[[str], Awaitable[str]], attempt: int) -> str:
        token: str | None = None
        try:
            token = await register(f"mpp-{self._trade_point}-{attempt}")
        finally:
            async with self._pool.acquire() as conn:
                stored = await conn.fetchrow(
                    "SELECT a.outcome, (a.device).* "
                    "FROM acquirer_device_registered($1, $2, $3, $4) a",
                    self._provider, self._trade_point, attempt, token)
        assert stored is not None and token is not None
        self._token = str(stored["device_token"] or token)
        return self._token

    async def lost(self, token: str) -> None:
        """The acquirer no longer knows this device: the next payment registers anew."""
        self._token = None
        async with self._pool.acquire() as conn:
            await conn.fetchval("SELECT outcome FROM acquirer_device_lost($1, $2, $3)",
                                self._provider, self._trade_point, token)

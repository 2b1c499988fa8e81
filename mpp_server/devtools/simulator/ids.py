"""Realistic-looking identifiers, unique across simulator restarts.

The MPP's database outlives the simulator, so a restarted simulator must not hand out
a paymentId the MPP has already seen: every id mixes a per-process seed (random unless
SIM_ID_SEED is set) with a counter. No randomness per id: cheap and reproducible.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import uuid

QR_PREFIX_DYNAMIC = "592"
QR_PREFIX_STATIC = "510"
QR_PREFIX_REFUND = "712"
CUSTOM_QR_BASE = "https://kaspi.kz/pay/"


class IdFactory:
    def __init__(self, seed: int | None = None) -> None:
        self.seed = secrets.randbelow(1_000_000) if seed is None else seed
        self._counter = itertools.count(1)

    def _next(self) -> int:
        return next(self._counter)

    def _digest(self, n: int) -> bytes:
        return hashlib.blake2b(f"{self.seed}:{n}".encode(), digest_size=16).digest()

    def qr_token(self, prefix: str) -> str:
        # 38 digits like the regulation's "592xxxxxxxxxxxxxxxxxxxxxxxxxxx6574344": the
        # counter keeps it unique, the digest makes it look like one.
        n = self._next()
        noise = int.from_bytes(self._digest(n)) % 10**19
        return f"{prefix}{self.seed:06d}{n:010d}{noise:019d}"

    def custom_qr_token(self) -> str:
        return f"{CUSTOM_QR_BASE}Sim{self.seed:06d}P{self._next()}"

    def payment_id(self) -> str:
        return f"{self.seed:06d}{self._next():010d}"

    def custom_payment_id(self) -> str:
        # The regulation's Custom example uses a UUID ("379eb787-1a36-..."); the
        # digest of (seed, counter) is unique in practice and looks like a uuid4.
        return str(uuid.UUID(bytes=self._digest(self._next()), version=4))

    def refund_id(self) -> str:
        return f"QR{self.seed:06d}{self._next():07d}"

    def ext_tran_id(self) -> str:
        return f"QR{self.seed:06d}{self._next():08d}"

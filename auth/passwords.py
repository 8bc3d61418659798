"""Argon2id password hashing that never blocks the event loop.

Hashing costs tens of milliseconds and 64 MiB by design, so it runs in worker
threads, at most ``os.cpu_count()`` at once (a login storm queues instead of
exhausting memory). Unknown users are verified against a dummy hash so that a
wrong username and a wrong password take the same time.
"""

from __future__ import annotations

import os

import anyio.to_thread
from anyio import CapacityLimiter
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

PROFILES = {
    "default": {},  # argon2-cffi defaults: Argon2id, t=3, m=64 MiB, p=4
    "fast": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1},  # tests only
}


class PasswordService:
    def __init__(self, profile: str = "default", max_concurrency: int | None = None) -> None:
        self._hasher = PasswordHasher(**PROFILES[profile])
        self._limiter = CapacityLimiter(max_concurrency or os.cpu_count() or 2)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; ``stored_hash=None`` means no such user."""
        if stored_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("dummy password for timing")
            await anyio.to_thread.run_sync(self._check, self._dummy_hash, password, limiter=self._limiter)
            return False
        return await anyio.to_thread.run_sync(self._check, stored_hash, password, limiter=self._limiter)

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

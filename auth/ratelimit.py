"""Failed-login throttling with the ``limits`` library's async API on Redis.

Failures are counted per username and per client IP in a moving window; once
either is spent, logins for it answer 429 with ``Retry-After`` until the
window frees a slot. Successful logins are not counted.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter


def limits_storage_uri(redis_url: str) -> str:
    """``redis://…`` -> ``async+redis://…``; ``unix:///s`` -> ``async+redis+unix:///s``."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class LoginThrottle:
    def __init__(self, redis_url: str, limit: str) -> None:
        self._storage = RedisStorage(limits_storage_uri(redis_url), implementation="redispy")
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._limit = parse(limit)

    def _keys(self, username: str, client_ip: str) -> list[tuple[str, str]]:
        return [("login-user", username.lower()), ("login-ip", client_ip)]

    async def retry_after(self, username: str, client_ip: str) -> int | None:
        """Seconds to wait when a key is spent, else None."""
        waits = []
        for namespace, key in self._keys(username, client_ip):
            if not await self._limiter.test(self._limit, namespace, key):
                stats = await self._limiter.get_window_stats(self._limit, namespace, key)
                waits.append(max(1, math.ceil(stats.reset_time - time.time())))
        return max(waits) if waits else None

    async def record_failure(self, username: str, client_ip: str) -> None:
        for namespace, key in self._keys(username, client_ip):
            await self._limiter.hit(self._limit, namespace, key)

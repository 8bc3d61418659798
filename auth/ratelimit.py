"""Login and registration throttling with the ``limits`` library's async API on Redis.

Every login attempt takes its slots *before* the password is verified, with
``hit()`` (an atomic Lua script in Redis): counting failures after the check
lets N concurrent guesses through, because all of them pass the "still under
the limit?" test before any of them is counted.

Three budgets, following OWASP's Authentication Cheat Sheet ("Login
Throttling": prefer throttling per account *and* per source over hard account
lock-outs, which let anyone deny an owner access by failing on purpose):

* ``per_pair`` — per username *and* client address (``TUSD_PY_LOGIN_RATE_LIMIT``):
  the guessing budget of one source against one account. A stranger who spends
  it blocks only themselves; the owner at another address is unaffected. A
  successful login clears it, so an owner who mistypes does not carry old
  failures.
* ``per_address`` — per client address, over all usernames
  (``TUSD_PY_LOGIN_ADDRESS_RATE_LIMIT``): bounds credential stuffing from one
  source across many accounts.
* ``per_user`` — per username, over all addresses, a much higher ceiling
  (``TUSD_PY_LOGIN_USER_RATE_LIMIT``): bounds a distributed guess of one account
  without letting a single stranger lock its owner out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter


def limits_storage_uri(redis_url: str) -> str:
    """``redis://…`` -> ``async+redis://…``; ``unix:///s`` -> ``async+redis+unix:///s``."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class Budget:
    """One or more ``limits`` items (``"10/minute;100/day"``) over one namespace."""

    def __init__(self, limiter: MovingWindowRateLimiter, namespace: str, spec: str) -> None:
        self._limiter = limiter
        self._namespace = namespace
        self._items: Sequence[RateLimitItem] = parse_many(spec)

    async def take(self, key: str) -> int | None:
        """Take a slot atomically; the seconds to wait when none is left, else None."""
        for item in self._items:
            if not await self._limiter.hit(item, self._namespace, key):
                stats = await self._limiter.get_window_stats(item, self._namespace, key)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None

    async def clear(self, key: str) -> None:
        for item in self._items:
            await self._limiter.clear(item, self._namespace, key)


class Throttle:
    """The login and registration budgets, sharing one Redis storage."""

    def __init__(
        self,
        redis_url: str,
        login_limit: str,
        *,
        login_address_limit: str,
        login_user_limit: str,
        register_limit: str,
    ) -> None:
        self._storage = RedisStorage(limits_storage_uri(redis_url), implementation="redispy")
        limiter = MovingWindowRateLimiter(self._storage)
        self.per_pair = Budget(limiter, "login-pair", login_limit)
        self.per_address = Budget(limiter, "login-ip", login_address_limit)
        self.per_user = Budget(limiter, "login-user", login_user_limit)
        self.register = Budget(limiter, "register-ip", register_limit)

    async def take_login(self, username: str, client_ip: str) -> int | None:
        """Take one attempt from every login budget before the password is checked."""
        name = username.lower()
        for budget, key in (
            (self.per_pair, f"{name}|{client_ip}"),
            (self.per_address, client_ip),
            (self.per_user, name),
        ):
            wait = await budget.take(key)
            if wait is not None:
                return wait
        return None

    async def login_succeeded(self, username: str, client_ip: str) -> None:
        await self.per_pair.clear(f"{username.lower()}|{client_ip}")

    async def take_registration(self, client_ip: str) -> int | None:
        return await self.register.take(client_ip)

"""One writer per upload, across processes and nodes: a lock in Redis.

The lock is ``SET key token NX PX ttl``, refreshed while held and released by
compare-and-delete, so a process that dies (even with kill -9) loses it after
``ttl``. A request that finds the lock taken asks the holder to let go (tusd's
behaviour): it sets a short-lived "release requested" key and polls. The
holder's watcher task, which refreshes the lock, sees the key and calls the
holder's interrupt callbacks: a PATCH stops reading its body, keeps what it
has and answers. No Redis round-trip happens per body chunk. Redis errors while
acquiring surface as :class:`~tusd_py.tus.errors.BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .errors import BackendUnavailable
from .locker import LockTimeout

logger = logging.getLogger("tusd_py.tus")

# The lock's defaults, written once (no setting exposes them; the app's wiring and the
# tests take them from here unless a test shortens one):
LOCK_TTL = 6.0
"""Seconds a lock outlives a holder that died (kill -9 included)."""
POLL_INTERVAL = 0.1
"""Seconds between the holder's refreshes, which also look for release requests: how
fast a PATCH lets go when another request asks. At most a third of the TTL."""
ACQUIRE_INTERVAL = 0.05
"""Seconds between a waiting request's attempts to take the lock."""


_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
end
return 0
"""

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return redis.call('EXISTS', KEYS[2])
end
return -1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLocker:
    """:class:`Locker` on Redis.

    ``ttl``: how long a lock outlives a dead holder. ``poll_interval``: how often
    the holder refreshes and looks for release requests (its reaction time).
    ``acquire_interval``: how often a waiter retries. Defaults: :data:`LOCK_TTL`,
    :data:`POLL_INTERVAL`, :data:`ACQUIRE_INTERVAL`.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "tus:lock:",
        ttl: float = LOCK_TTL,
        poll_interval: float = POLL_INTERVAL,
        acquire_interval: float = ACQUIRE_INTERVAL,
    ) -> None:
        if poll_interval * 3 > ttl:
            raise ValueError("poll_interval must be well below ttl")
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl
        self.poll_interval = poll_interval
        self.acquire_interval = acquire_interval
        self._acquire = redis.register_script(_ACQUIRE)
        self._refresh = redis.register_script(_REFRESH)
        self._release = redis.register_script(_RELEASE)

    def _keys(self, upload_id: str) -> list[str]:
        # One hash tag per upload: both keys live in the same slot on a Redis Cluster.
        key = f"{self.prefix}{{{upload_id}}}"
        return [key, key + ":release"]

    async def _try_acquire(self, keys: list[str], args: list[Any]) -> bool:
        try:
            return bool(await self._acquire(keys=keys, args=args))
        except RedisError as error:
            raise BackendUnavailable(str(error)) from error

    @contextlib.asynccontextmanager
    async def lock(
        self, upload_id: str, *, wait: float, request_release: bool = True
    ) -> AsyncIterator[RedisLock]:
        keys = self._keys(upload_id)
        token = secrets.token_urlsafe(16)
        ttl_ms = max(1, int(self.ttl * 1000))
        # The request outlives a few retries of ours, not much more.
        request_ms = max(1, int(max(self.acquire_interval * 4, self.poll_interval * 4) * 1000))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        ask = "1" if request_release else "0"
        while not await self._try_acquire(keys, [token, ttl_ms, ask, request_ms]):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LockTimeout(upload_id)
            await asyncio.sleep(min(self.acquire_interval, remaining))
        held = RedisLock(self, keys, token)
        held.start()
        try:
            yield held
        finally:
            # Shielded: a cancelled request still gives the lock back at once.
            await asyncio.shield(held.release())


class RedisLock:
    """A lock held by this process, with its watcher task."""

    def __init__(self, locker: RedisLocker, keys: list[str], token: str) -> None:
        self._locker = locker
        self._keys = keys
        self._token = token
        self._interrupted = False
        self._lost = False
        self._callbacks: list[Callable[[], None]] = []
        self._watcher: asyncio.Task[None] | None = None

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    @property
    def lost(self) -> bool:
        return self._lost

    def on_interrupt(self, callback: Callable[[], None]) -> Callable[[], None]:
        if self._interrupted:
            callback()
            return lambda: None
        self._callbacks.append(callback)

        def unregister() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unregister

    def _interrupt(self) -> None:
        if self._interrupted:
            return
        self._interrupted = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a callback must not stop the watcher
                logger.exception("lock interrupt callback failed")

    def start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        locker = self._locker
        ttl_ms = max(1, int(locker.ttl * 1000))
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        while True:
            await asyncio.sleep(locker.poll_interval)
            try:
                state: Any = await locker._refresh(keys=self._keys, args=[self._token, ttl_ms])
            except RedisError as error:
                if loop.time() - last_ok < locker.ttl:
                    logger.warning("could not refresh upload lock: %s", error)
                    continue
                state = -1
            if int(state) < 0:
                logger.warning("upload lock %s was lost", self._keys[0])
                self._lost = True
                self._interrupt()
                return
            last_ok = loop.time()
            if int(state) > 0:
                self._interrupt()

    async def release(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self._callbacks.clear()
        if self._lost:
            return
        try:
            await self._locker._release(keys=self._keys[:1], args=[self._token])
        except RedisError as error:  # it expires on its own after ttl
            logger.warning("could not release upload lock: %s", error)

"""Per-owner caps on unfinished uploads, counted in Redis so every node agrees.

One hash per owner maps each unfinished upload to its declared bytes (a
deferred length counts as the maximum size until it is known). A reservation
is checked and recorded in one Lua script, so two concurrent creations cannot
both slip under a cap. Entries are released on completion, termination and
expiry; the handler also reconciles an owner's entries against the store when a
cap is hit, so an entry leaked by a crash cannot block its owner for good.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .errors import BackendUnavailable
from .quota import QuotaExceeded

_RESERVE = """
local held = redis.call('HVALS', KEYS[1])
local count = #held
local total = 0
for _, value in ipairs(held) do total = total + tonumber(value) end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if count + 1 > tonumber(ARGV[3]) then return -1 end
if total + tonumber(ARGV[2]) > tonumber(ARGV[4]) then return -2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

_UPDATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"""


class RedisQuota:
    """:class:`~tusd_py.tus.quota.Quota` in Redis: ``max_uploads`` unfinished uploads and
    ``max_bytes`` declared bytes per owner. Redis errors raise ``BackendUnavailable``."""

    def __init__(
        self,
        redis: Redis,
        *,
        max_uploads: int,
        max_bytes: int,
        prefix: str = "tus:pending:",
        retry_after: int = 60,
    ) -> None:
        self.redis = redis
        self.max_uploads = max_uploads
        self.max_bytes = max_bytes
        self.prefix = prefix
        self.retry_after = retry_after
        self._reserve = redis.register_script(_RESERVE)
        self._update = redis.register_script(_UPDATE)

    def _key(self, owner: str) -> str:
        return f"{self.prefix}{owner}"

    async def reserve(self, owner: str, upload_id: str, nbytes: int) -> None:
        """Count a new unfinished upload of ``nbytes``; :class:`QuotaExceeded` past a cap."""
        result = int(
            await _call(
                self._reserve(
                    keys=[self._key(owner)], args=[upload_id, nbytes, self.max_uploads, self.max_bytes]
                )
            )
        )
        if result == -1:
            raise QuotaExceeded("uploads")
        if result == -2:
            raise QuotaExceeded("bytes")

    async def update(self, owner: str, upload_id: str, nbytes: int) -> None:
        """A deferred length became known: count ``nbytes`` instead of the maximum."""
        await _call(self._update(keys=[self._key(owner)], args=[upload_id, nbytes]))

    async def release(self, owner: str, upload_id: str) -> None:
        await _call(self.redis.hdel(self._key(owner), upload_id))

    async def held(self, owner: str) -> dict[str, int]:
        """The owner's counted uploads and their bytes."""
        raw = await _call(self.redis.hgetall(self._key(owner)))
        return {_text(key): int(value) for key, value in raw.items()}


async def _call(awaitable: Any) -> Any:
    try:
        return await awaitable
    except RedisError as error:
        raise BackendUnavailable(str(error)) from error


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

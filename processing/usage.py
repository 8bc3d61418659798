"""What a user keeps on disk, counted in Redis: the per-user storage quota's ledger.

One hash per user, ``tusd:usage:<owner>``, maps each thing the user keeps to its
bytes (beside a running ``total``, so that checks do not read every entry): ``upload:<id>`` (an upload, finished or not: its declared length, or the
largest possible one while deferred), ``room:<id>`` (bytes held back for the result
of the task the upload becomes) and ``result:<id>`` (a written result, its real
size). The API reserves ``upload:`` and ``room:`` at creation; the worker swaps
``room:`` for ``result:`` when a result is written; retention and account removal
release them. Every check-and-write is one Lua script, so concurrent creations (on
any node) cannot together pass the limit.

It lives in ``processing`` because both sides write it and ``processing`` must not
import the web application; the tus handler sees it through the app's adapter
(:mod:`tusd_py.usage`) behind the :class:`tusd_py.tus.quota.StorageQuota` interface.
"""

from __future__ import annotations

from redis.asyncio import Redis

from processing.records import KEY_PREFIX, text

DEFAULT_STORAGE_QUOTA = 10 * 1024**3
"""Bytes one user may keep (``TUSD_PY_STORAGE_QUOTA``): 10 GiB."""

# Every script keeps a running ``total`` field beside the entries, so that no check reads
# every entry (a user keeps one to three per stored upload: thousands, for 7 days).
# ``total_of`` computes it once for a hash written before the field existed.
_TOTAL = """
local function total_of(key)
  local total = redis.call('HGET', key, 'total')
  if total then return tonumber(total) end
  local sum = 0
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do sum = sum + tonumber(flat[i + 1]) end
  return sum
end
"""

# Reserve ARGV[2..] (name, bytes pairs) unless the first name is already counted
# (idempotent); refuse (0) if the total would pass ARGV[1].
_RESERVE = (
    _TOTAL
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 1 end
local total = total_of(KEYS[1])
local adding = 0
for i = 3, #ARGV, 2 do adding = adding + tonumber(ARGV[i]) end
if total + adding > tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV, 2 do
  total = total + tonumber(ARGV[i + 1]) - tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'total', total)
return 1
"""
)

# Set the counted names among ARGV (name, bytes pairs) to new sizes; others stay absent.
_RESIZE = (
    _TOTAL
    + """
local total = total_of(KEYS[1])
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old then
    total = total + tonumber(ARGV[i + 1]) - tonumber(old)
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'total', total) end
return 1
"""
)

# A result of ARGV[3] bytes replaces the room (ARGV[2]) and any earlier result (ARGV[4])
# of its task, if the total stays within ARGV[1]; else the room is given back (0).
_CHARGE = (
    _TOTAL
    + """
local total = total_of(KEYS[1])
local room = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
local earlier = tonumber(redis.call('HGET', KEYS[1], ARGV[4]) or '0')
redis.call('HDEL', KEYS[1], ARGV[2])
if total - room - earlier + tonumber(ARGV[3]) > tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'total', total - room)
  return 0
end
redis.call('HSET', KEYS[1], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[1], 'total', total - room - earlier + tonumber(ARGV[3]))
return 1
"""
)

# Forget the names in ARGV; the hash goes when nothing but its total is left.
_RELEASE = (
    _TOTAL
    + """
local total = total_of(KEYS[1])
for i = 1, #ARGV do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old then
    total = total - tonumber(old)
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
if redis.call('HLEN', KEYS[1]) <= 1 and redis.call('HEXISTS', KEYS[1], 'total') == 1 then
  redis.call('DEL', KEYS[1])
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'total', total)
end
return 1
"""
)

TOTAL_FIELD = "total"
"""The running total beside the entries (not an entry: never in :meth:`StorageLedger.entries`)."""


def usage_key(owner: str) -> str:
    return f"{KEY_PREFIX}usage:{owner}"


def upload_entry(upload_id: str) -> str:
    return f"upload:{upload_id}"


def room_entry(task_id: str) -> str:
    return f"room:{task_id}"


def result_entry(task_id: str) -> str:
    return f"result:{task_id}"


def result_room(nbytes: int) -> int:
    """Bytes held back for the result of an upload of ``nbytes``.

    Our operations' results are at most about their input's size; gzip of
    incompressible data grows by 5 bytes per 16 KiB stored block plus an 18-byte
    header and trailer, so 1/1024 of the input plus 1 KiB covers every operation.
    """
    return nbytes + nbytes // 1024 + 1024 if nbytes else 0


class StorageLedger:
    """Per-user byte counts against ``limit`` (the storage quota), in Redis."""

    def __init__(self, redis: Redis, *, limit: int = DEFAULT_STORAGE_QUOTA) -> None:
        self.redis = redis
        self.limit = limit
        self._reserve = redis.register_script(_RESERVE)
        self._resize = redis.register_script(_RESIZE)
        self._charge = redis.register_script(_CHARGE)
        self._release = redis.register_script(_RELEASE)

    async def reserve(self, owner: str, entries: dict[str, int]) -> bool:
        """Count ``entries`` (name -> bytes) together, or nothing if the total would pass
        the limit (False). Idempotent: True at once if the first name is counted."""
        flat: list[str | int] = [self.limit]
        for name, nbytes in entries.items():
            flat += [name, nbytes]
        return bool(int(await self._reserve(keys=[usage_key(owner)], args=flat)))

    async def resize(self, owner: str, entries: dict[str, int]) -> None:
        """New sizes for names already counted (a deferred length became known)."""
        flat: list[str | int] = []
        for name, nbytes in entries.items():
            flat += [name, nbytes]
        await self._resize(keys=[usage_key(owner)], args=flat)

    async def charge_result(self, owner: str, task_id: str, nbytes: int) -> bool:
        """A result of ``nbytes`` was written: it replaces the task's room. False (and the
        room is given back) if it would pass the limit: the task must then fail."""
        args = [self.limit, room_entry(task_id), nbytes, result_entry(task_id)]
        return bool(int(await self._charge(keys=[usage_key(owner)], args=args)))

    async def release(self, owner: str, *names: str) -> None:
        if names:
            await self._release(keys=[usage_key(owner)], args=list(names))

    async def release_task(self, owner: str, task_id: str) -> None:
        """Everything a task and its upload held (retention, account removal)."""
        await self.release(owner, upload_entry(task_id), room_entry(task_id), result_entry(task_id))

    async def entries(self, owner: str) -> dict[str, int]:
        raw = await self.redis.hgetall(usage_key(owner))  # type: ignore[misc]
        return {text(name): int(value) for name, value in raw.items() if text(name) != TOTAL_FIELD}

    async def used(self, owner: str) -> int:
        return sum((await self.entries(owner)).values())

    async def forget(self, owner: str) -> None:
        await self.redis.delete(usage_key(owner))

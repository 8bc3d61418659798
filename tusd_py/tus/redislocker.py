"""One writer per upload, across processes and nodes: a lock in Redis.

The lock is ``SET key value NX PX ttl``, refreshed while held and released by
compare-and-delete. A request that finds the lock taken asks the holder to let
go (tusd's behaviour): it sets a short-lived "release requested" key and polls.
One refresh loop per locker (per process), not one per lock, refreshes every
held lock, reads their release requests and keeps the node's heartbeat in a
single script call per ``poll_interval``, so a busy node pays one round trip per
interval however many uploads it writes. It calls the interrupt callbacks of a
lock whose release was requested: a PATCH stops reading its body, keeps what it
has and answers. No Redis round-trip happens per body chunk. Redis errors while
acquiring surface as :class:`~tusd_py.tus.errors.BackendUnavailable`.

A dead holder must not block anyone (a HEAD after a node's kill -9 answers at
once), so a lock names its holder: ``<node>|<incarnation>|<token>``. Every node
keeps ``<prefix>node:<node>`` = its incarnation (a random id per process) with
a short TTL on Redis's clock, refreshed by the same scripts that take and
refresh its locks. A lock whose node key is missing (the node died, or stalled
for longer than ``heartbeat_ttl``) or names another incarnation (the node was
restarted: the new process claims its name when it takes its first lock) is
taken over at once, inside the acquire script. A live node's heartbeat never
lapses while its loop runs, so two live nodes never hold one upload: a stall
shorter than ``heartbeat_ttl`` minus ``poll_interval`` is harmless (tested with
1 s against the default 2 s).

``node`` must be unique among live processes and stable across restarts of one
(``host:port`` of the API); two live processes with one name would take each
other's identity: the one that loses its name notices within ``poll_interval``,
logs an error and treats its locks as lost. Without ``node`` a random name is
used (a restart then waits for the old heartbeat to lapse, ``heartbeat_ttl``).
The node key and the lock key live in different hash slots: this needs a
single Redis (or a primary with replicas), not a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .errors import BackendUnavailable
from .locker import Interruptible, LockTimeout

logger = logging.getLogger("tusd_py.tus")

# Both scripts first keep this node's heartbeat: the node key = incarnation, for ms.
# claim == '1' takes the name (a fresh process); else a name held by another
# incarnation means we lost it (false: the script returns -2).
_HEARTBEAT = """
local function heartbeat(key, incarnation, ms, claim)
  local mine = redis.call('GET', key)
  if claim ~= '1' and mine and mine ~= incarnation then
    return false
  end
  redis.call('SET', key, incarnation, 'PX', ms)
  return true
end
"""

# KEYS: lock, release, own node key[, holder's node key]. ARGV: value, ttl ms,
# ask ('1'), request ms, incarnation, heartbeat ms, claim, expected holder value,
# expected holder's incarnation. Returns 1 (taken), -2 (name lost) or the holder.
_ACQUIRE = (
    _HEARTBEAT
    + """
if not heartbeat(KEYS[3], ARGV[5], ARGV[6], ARGV[7]) then
  return -2
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
local holder = redis.call('GET', KEYS[1])
if KEYS[4] and holder == ARGV[8] and redis.call('GET', KEYS[4]) ~= ARGV[9] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('DEL', KEYS[2])
  return 1
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
end
return holder or ''
"""
)

# One call per interval for every lock this process holds. KEYS[1]: own node key,
# then each lock and its release key. ARGV[1] ttl ms, ARGV[2..4] the heartbeat's
# (incarnation, heartbeat ms, claim), then each lock's value. Returns -2 (name lost)
# or one state per lock: 1 (release requested), 0 (still ours), -1 (lost).
_REFRESH_ALL = (
    _HEARTBEAT
    + """
if not heartbeat(KEYS[1], ARGV[2], ARGV[3], ARGV[4]) then
  return -2
end
local states = {}
for i = 2, #KEYS, 2 do
  local value = ARGV[4 + i / 2]
  if redis.call('GET', KEYS[i]) == value then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    states[#states + 1] = redis.call('EXISTS', KEYS[i + 1])
  else
    states[#states + 1] = -1
  end
end
return states
"""
)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLocker:
    """:class:`Locker` on Redis.

    ``node``: this process's name among the nodes (see the module). ``ttl``: how
    long a lock outlives a holder whose heartbeat cannot be checked (a backstop).
    ``heartbeat_ttl``: how long a node counts as alive after its last refresh.
    ``poll_interval``: how often the holder refreshes and looks for release
    requests (its reaction time). ``acquire_interval``: how often a waiter retries.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "tus:lock:",
        node: str | None = None,
        ttl: float = 6.0,
        heartbeat_ttl: float = 2.0,
        poll_interval: float = 0.1,
        acquire_interval: float = 0.05,
    ) -> None:
        if poll_interval * 3 > min(ttl, heartbeat_ttl):
            raise ValueError("poll_interval must be well below ttl and heartbeat_ttl")
        if node is not None and ("|" in node or not node):
            raise ValueError("node must be a non-empty name without '|'")
        self.redis = redis
        self.prefix = prefix
        self.node = node or secrets.token_hex(8)
        self.incarnation = secrets.token_hex(8)
        self.ttl = ttl
        self.heartbeat_ttl = heartbeat_ttl
        self.poll_interval = poll_interval
        self.acquire_interval = acquire_interval
        self._claimed = False
        self._draining = False
        self._held: set[RedisLock] = set()
        self._acquire = redis.register_script(_ACQUIRE)
        self._refresh_all = redis.register_script(_REFRESH_ALL)
        self._refresher: asyncio.Task[None] | None = None
        self._refresher_sleeping = False
        self._release = redis.register_script(_RELEASE)

    def _keys(self, upload_id: str) -> list[str]:
        # One hash tag per upload: the lock and its release request share a slot.
        key = f"{self.prefix}{{{upload_id}}}"
        return [key, key + ":release"]

    def node_key(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    def _heartbeat_args(self) -> list[Any]:
        claim = "0" if self._claimed else "1"
        return [self.incarnation, max(1, int(self.heartbeat_ttl * 1000)), claim]

    def drain(self) -> None:
        """Shutting down: interrupt every held lock, and every lock taken from now on, so
        running PATCHes save what they have and answer at once."""
        self._draining = True
        for held in list(self._held):
            held._interrupt()

    async def _try_acquire(self, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._acquire(keys=keys, args=args)
        except RedisError as error:
            raise BackendUnavailable(str(error)) from error

    @contextlib.asynccontextmanager
    async def lock(
        self, upload_id: str, *, wait: float, request_release: bool = True
    ) -> AsyncIterator[RedisLock]:
        keys = [*self._keys(upload_id), self.node_key(self.node)]
        value = f"{self.node}|{self.incarnation}|{secrets.token_urlsafe(12)}"
        ttl_ms = max(1, int(self.ttl * 1000))
        # The request outlives a few retries of ours, not much more.
        request_ms = max(1, int(max(self.acquire_interval * 4, self.poll_interval * 4) * 1000))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        ask = "1" if request_release else "0"
        holder = b""
        while True:
            args: list[Any] = [value, ttl_ms, ask, request_ms, *self._heartbeat_args()]
            attempt_keys = keys
            node, _, rest = holder.decode(errors="replace").partition("|")
            incarnation = rest.partition("|")[0]
            if node and incarnation:  # ask whether the holder is still alive, atomically
                attempt_keys = [*keys, self.node_key(node)]
                args += [holder, incarnation]
            sent = loop.time()
            answer = await self._try_acquire(attempt_keys, args)
            self._claimed = True
            if answer == 1:
                break
            if answer == -2:
                logger.error("node name %r was taken by another process", self.node)
                raise BackendUnavailable(f"node name {self.node!r} is used by another process")
            seen = answer if isinstance(answer, bytes) else str(answer).encode()
            if seen != holder and seen:
                holder = seen  # a holder we have not checked yet: check it at once
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LockTimeout(upload_id)
            await asyncio.sleep(min(self.acquire_interval, remaining))
        held = RedisLock(self, keys, value, refreshed=sent)
        self._held.add(held)
        self._start_refresher()
        if self._draining:
            held._interrupt()
        try:
            yield held
        finally:
            self._held.discard(held)
            if not self._held and self._refresher is not None and self._refresher_sleeping:
                self._refresher.cancel()  # idle: no round trips while nothing is held
                self._refresher = None
            # Shielded: a cancelled request still gives the lock back at once.
            await asyncio.shield(held.release())

    def _start_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        """Refresh every held lock once per interval; ends when none is held."""
        loop = asyncio.get_running_loop()
        ttl_ms = max(1, int(self.ttl * 1000))
        # Measured from before the round trip: the heartbeat may be older than the answer.
        bound = min(self.ttl, self.heartbeat_ttl)
        while self._held:
            self._refresher_sleeping = True
            try:
                await asyncio.sleep(self.poll_interval)
            finally:
                self._refresher_sleeping = False
            batch = list(self._held)
            if not batch:
                break
            keys = [self.node_key(self.node)]
            args: list[Any] = [ttl_ms, *self._heartbeat_args()]
            for held in batch:
                keys += held._keys[:2]
                args.append(held._value)
            sent = loop.time()
            try:
                states: Any = await self._refresh_all(keys=keys, args=args)
            except RedisError as error:
                logger.warning("could not refresh upload locks: %s", error)
                for held in batch:
                    if held in self._held and loop.time() - held._refreshed >= bound:
                        held._lose()
                continue
            if not isinstance(states, list):  # -2: another process took our name
                logger.error("node name %r was taken by another process", self.node)
                states = [-1] * len(batch)
            for held, state in zip(batch, states, strict=True):
                if held not in self._held:
                    continue  # released while we asked: its answer means nothing now
                if int(state) < 0:
                    held._lose()
                    continue
                held._refreshed = sent
                if int(state) > 0:
                    held._interrupt()
        self._refresher = None


class RedisLock(Interruptible):
    """A lock held by this process; its locker's refresh loop keeps it."""

    def __init__(self, locker: RedisLocker, keys: list[str], value: str, *, refreshed: float) -> None:
        super().__init__()
        self._locker = locker
        self._keys = keys
        self._value = value
        self._refreshed = refreshed  # loop time of the last round trip that confirmed it
        self._lost = False

    @property
    def lost(self) -> bool:
        return self._lost

    def _lose(self) -> None:
        if self._lost:
            return
        logger.warning("upload lock %s was lost", self._keys[0])
        self._lost = True
        self._locker._held.discard(self)  # no longer ours to refresh
        self._interrupt()

    async def release(self) -> None:
        self._callbacks.clear()
        if self._lost:
            return
        try:
            await self._locker._release(keys=self._keys[:1], args=[self._value])
        except RedisError as error:  # it expires on its own after ttl
            logger.warning("could not release upload lock: %s", error)

"""The Redis lock and the per-owner quota, on the suite's real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid

import pytest
import redis.asyncio as aioredis

from tests.support import free_port
from tusd_py.tus.errors import BackendUnavailable
from tusd_py.tus.locker import LockTimeout
from tusd_py.tus.quota import QuotaExceeded
from tusd_py.tus.redislocker import RedisLocker
from tusd_py.tus.redisquota import RedisQuota


def new_locker(redis: aioredis.Redis, **options: float) -> RedisLocker:
    return RedisLocker(redis, prefix=f"t{uuid.uuid4().hex[:6]}:lock:", **options)


async def test_one_holder_at_a_time(redis: aioredis.Redis) -> None:
    locker = new_locker(redis)
    async with locker.lock("u1", wait=0) as held:
        assert not held.interrupted
        with pytest.raises(LockTimeout):
            async with locker.lock("u1", wait=0.2, request_release=False):
                pass
        async with locker.lock("u2", wait=0):  # other uploads are independent
            pass
    async with locker.lock("u1", wait=0):  # released by compare-and-delete
        pass


async def test_waiter_asks_the_holder_to_let_go(redis: aioredis.Redis) -> None:
    locker = new_locker(redis, poll_interval=0.05)
    interrupted = asyncio.Event()
    holding = asyncio.Event()
    order: list[str] = []

    async def holder() -> None:
        async with locker.lock("u", wait=0) as held:
            held.on_interrupt(interrupted.set)
            holding.set()
            await interrupted.wait()  # a PATCH would stop reading its body here
            order.append("holder done")

    task = asyncio.create_task(holder())
    await holding.wait()  # the lock is taken before we ask for it
    async with locker.lock("u", wait=5) as mine:
        order.append("waiter got it")
        assert not mine.interrupted  # the request that was served is not one against us
    await task
    assert order == ["holder done", "waiter got it"]


async def test_a_waiter_that_does_not_ask_does_not_interrupt(redis: aioredis.Redis) -> None:
    locker = new_locker(redis, poll_interval=0.05)
    async with locker.lock("u", wait=0) as held:
        with pytest.raises(LockTimeout):
            async with locker.lock("u", wait=0.3, request_release=False):
                pass
        assert not held.interrupted


async def test_a_lost_lock_is_noticed(redis: aioredis.Redis) -> None:
    locker = new_locker(redis, poll_interval=0.05)
    async with locker.lock("u", wait=0) as held:
        fired = asyncio.Event()
        held.on_interrupt(fired.set)
        await redis.delete(locker._keys("u")[0])  # e.g. expired during a long stall
        await asyncio.wait_for(fired.wait(), 10)
        assert held.lost
        await redis.set(locker._keys("u")[0], "someone else")
    # Leaving the block released nothing: compare-and-delete spared the new holder.
    assert await redis.get(locker._keys("u")[0]) == b"someone else"


async def test_one_refresh_call_per_interval_covers_every_held_lock(redis: aioredis.Redis) -> None:
    # A busy node pays one round trip per interval, not one per upload it writes.
    locker = new_locker(redis, poll_interval=0.05)
    calls: list[int] = []
    three_calls = asyncio.Event()
    refresh = locker._refresh_all

    async def counting(*, keys: list[str], args: list[object]) -> object:
        calls.append(len(keys))
        if len(calls) >= 3:
            three_calls.set()
        return await refresh(keys=keys, args=args)

    locker._refresh_all = counting  # type: ignore[method-assign]
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(locker.lock(f"u{i}", wait=0)) for i in range(20)]
        calls.clear()
        three_calls.clear()
        await asyncio.wait_for(three_calls.wait(), 10)
        assert calls[:3] == [1 + 2 * 20] * 3  # the node key, then each lock and its release key
        assert not any(lock.interrupted or lock.lost for lock in held)
        fired = asyncio.Event()
        held[7].on_interrupt(fired.set)
        async with asyncio.timeout(10):
            await redis.set(locker._keys("u7")[1], "1")  # a waiter's release request
            await fired.wait()
        assert not held[7].lost
        assert not any(lock.interrupted for i, lock in enumerate(held) if i != 7)
    if (running := locker._refresher) is not None:  # it was in a call: it ends after it
        await asyncio.wait_for(running, 10)
    assert locker._refresher is None  # nothing held: the loop stopped, no idle round trips


async def test_a_lock_of_a_killed_process_expires(redis_url: str, redis: aioredis.Redis) -> None:
    locker = new_locker(redis, ttl=1.0, poll_interval=0.1)
    snippet = f"""
import asyncio, sys
import redis.asyncio as aioredis
from tusd_py.tus.redislocker import RedisLocker
async def main():
    locker = RedisLocker(aioredis.Redis.from_url({redis_url!r}), prefix={locker.prefix!r},
                         ttl=1.0, poll_interval=0.1)
    async with locker.lock("u", wait=0):
        print("held", flush=True)
        await asyncio.sleep(60)
asyncio.run(main())
"""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", snippet, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert (await child.stdout.readline()).strip() == b"held"
        child.kill()  # SIGKILL: no release, no more refreshes
        await child.wait()
        async with locker.lock("u", wait=10):
            pass
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


def new_quota(redis: aioredis.Redis, **caps: int) -> RedisQuota:
    return RedisQuota(redis, prefix=f"t{uuid.uuid4().hex[:6]}:pending:", **caps)


async def test_quota_caps_uploads_and_bytes(redis: aioredis.Redis) -> None:
    quota = new_quota(redis, max_uploads=2, max_bytes=100)
    await quota.reserve("alice", "a", 40)
    await quota.reserve("alice", "a", 40)  # idempotent for the same upload
    await quota.reserve("alice", "b", 60)
    with pytest.raises(QuotaExceeded) as full:
        await quota.reserve("alice", "c", 0)
    assert full.value.reason == "uploads"
    await quota.reserve("bob", "c", 100)  # per owner
    await quota.release("alice", "b")
    with pytest.raises(QuotaExceeded) as heavy:
        await quota.reserve("alice", "c", 61)
    assert heavy.value.reason == "bytes"
    await quota.update("alice", "a", 10)  # a deferred length became known
    await quota.reserve("alice", "c", 90)
    assert await quota.held("alice") == {"a": 10, "c": 90}
    await quota.update("alice", "gone", 5)  # never re-adds a released upload
    assert "gone" not in await quota.held("alice")


async def test_concurrent_reservations_never_exceed_the_cap(redis: aioredis.Redis) -> None:
    quota = new_quota(redis, max_uploads=5, max_bytes=10**9)
    results = await asyncio.gather(
        *(quota.reserve("alice", f"u{i}", 1) for i in range(30)), return_exceptions=True
    )
    assert sum(result is None for result in results) == 5
    assert len(await quota.held("alice")) == 5


async def test_an_unreachable_redis_is_backend_unavailable() -> None:
    # The handler knows no redis exception: the Redis implementations translate them.
    down = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        with pytest.raises(BackendUnavailable):
            async with RedisLocker(down).lock("u", wait=0):
                pass
        quota = RedisQuota(down, max_uploads=1, max_bytes=1)
        with pytest.raises(BackendUnavailable):
            await quota.reserve("alice", "u", 1)
        with pytest.raises(BackendUnavailable):
            await quota.held("alice")
    finally:
        await down.aclose()

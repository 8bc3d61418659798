"""The expiry sweep, driven directly on a store in a temporary directory."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from tusd_py.tus import FileStore, Hooks, RedisLocker, RedisQuota, TusHandler, UploadInfo


async def nobody(request: object) -> str | None:
    return None


def backdate(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


async def test_sweep_removes_expired_uploads_only(tmp_path: Path, redis: aioredis.Redis) -> None:
    prefix = f"sweep{uuid.uuid4().hex[:6]}:"
    store = FileStore(tmp_path)
    locker = RedisLocker(redis, prefix=prefix + "lock:")
    quota = RedisQuota(redis, max_uploads=100, max_bytes=10**9, prefix=prefix + "pending:")
    finished_ids: list[str] = []

    async def post_finish(info: UploadInfo) -> None:
        finished_ids.append(info.id)

    hooks = Hooks(nobody, post_finish=post_finish)
    handler = TusHandler(store, locker, hooks, max_size=1000, expiry_seconds=60, quota=quota)

    async def upload(name: str, length: int, written: int, *, age: float, **fields: object) -> str:
        info = UploadInfo(id=uuid.uuid4().hex, owner="alice", length=length, created_at=time.time(), **fields)  # type: ignore[arg-type]
        await store.create(info)
        await quota.reserve("alice", info.id, length)
        (tmp_path / info.id).write_bytes(b"x" * written)
        backdate(tmp_path / info.id, age)
        names[name] = info.id
        return info.id

    names: dict[str, str] = {}
    await upload("stale", 10, 3, age=120)
    await upload("fresh", 10, 3, age=5)
    finished = await upload("finished", 10, 10, age=10_000)
    await store.mark_finished(finished)  # its finish hook ran: the application owns it now
    await upload("stale partial", 10, 10, age=120, partial=True)
    # Its node died (or Redis was away) between the last byte and the finish: a task, not expired.
    stranded = await upload("complete, hook never ran", 10, 10, age=120)
    written = await upload("complete, being finished", 10, 10, age=120)
    busy = await upload("stale but being written", 10, 3, age=120)
    leftover = tmp_path / ".tmp" / "crashed.chunk"
    leftover.write_bytes(b"unverified")
    backdate(leftover, 7200)

    async with locker.lock(busy, wait=0), locker.lock(written, wait=0):
        assert await handler.sweep_expired() == 2
        assert finished_ids == [stranded]  # the one being written is its writer's to finish
    remaining = {upload_id for upload_id in names.values() if (tmp_path / upload_id).exists()}
    assert remaining == {names["fresh"], finished, busy, stranded, written}
    for upload_id in set(names.values()) - remaining:
        assert not [p for p in os.listdir(tmp_path) if p.startswith(upload_id)]
    assert (await store.get(stranded)).finished
    assert set(await quota.held("alice")) == {names["fresh"], finished, busy, written}
    assert not leftover.exists()

    assert await handler.sweep_expired() == 1  # the busy one, once its writer is gone
    assert finished_ids == [stranded, written]  # and the other, once its lock is free
    assert await handler.sweep_expired() == 0
    assert finished_ids == [stranded, written]  # exactly once each

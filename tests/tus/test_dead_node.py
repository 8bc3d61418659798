"""A dead node's locks never block the living (issue 10), with real processes, real
kill -9 and the suite's real Redis: takeover by a restarted node at once and by another
node once the dead one's heartbeat lapses; a stalled but live node keeps its locks;
a complete upload whose finish was never recorded becomes a task exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from tusclient import client as tus_client

from tests.tus.helpers import (
    TusServer,
    create,
    file_size,
    finished_runs,
    offset_of,
    patch,
    slow_body,
    wait_for,
)
from tests.tus.server import build_app
from tusd_py.tus.locker import LockTimeout
from tusd_py.tus.memory import MemoryLocker
from tusd_py.tus.redislocker import RedisLocker

MiB = 1024 * 1024
Factory = Callable[..., TusServer]

HOLDER = """
import asyncio, sys, time
import redis.asyncio as aioredis
from tusd_py.tus.redislocker import RedisLocker
async def main():
    locker = RedisLocker(aioredis.Redis.from_url({url!r}), prefix={prefix!r}, node={node!r},
                         ttl={ttl}, heartbeat_ttl={heartbeat})
    async with locker.lock("u", wait=0) as held:
        print("held", flush=True)
        await asyncio.sleep(0.3)
        if {stall}:
            print("stalling", flush=True)
            time.sleep({stall})  # the whole event loop stops: no refresh, no heartbeat
            print("awake", flush=True)
            await asyncio.sleep(0.5)
            print("lost" if held.lost else "kept", flush=True)
            sys.stdin.readline()
            return
        await asyncio.sleep(3600)
asyncio.run(main())
"""


async def holder_process(
    redis_url: str, prefix: str, node: str, *, ttl: float = 60.0, heartbeat: float = 30.0, stall: float = 0
) -> asyncio.subprocess.Process:
    snippet = HOLDER.format(
        url=redis_url, prefix=prefix, node=node, ttl=ttl, heartbeat=heartbeat, stall=stall
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", snippet, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    assert (await child.stdout.readline()).strip() == b"held"
    return child


async def kill(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.kill()  # SIGKILL: no release, no more refreshes
        await child.wait()


def in_thread(target: Callable[[], Any]) -> threading.Thread:
    """Run a client request in a thread whose outcome does not matter (its server dies)."""

    def run() -> None:
        with contextlib.suppress(Exception):  # the connection dies with the server
            target()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def new_prefix() -> str:
    return f"dead{uuid.uuid4().hex[:6]}:lock:"


async def test_a_restarted_node_takes_its_dead_predecessors_lock_at_once(
    redis_url: str, redis: aioredis.Redis
) -> None:
    prefix = new_prefix()
    # Lock TTL 60 s and heartbeat 30 s: only the restart can free the lock now.
    child = await holder_process(redis_url, prefix, "node-a:8000")
    try:
        await kill(child)
        other = RedisLocker(redis, prefix=prefix, node="node-b:8000", ttl=60, heartbeat_ttl=30)
        with pytest.raises(LockTimeout):  # node-a's heartbeat is still fresh: it may be alive
            async with other.lock("u", wait=0, request_release=False):
                pass
        restarted = RedisLocker(redis, prefix=prefix, node="node-a:8000", ttl=60, heartbeat_ttl=30)
        async with restarted.lock("u", wait=0) as held:  # a new incarnation: the old one is dead
            assert not held.lost
            assert (await redis.get(restarted._keys("u")[0])).decode().startswith("node-a:8000|")
        async with other.lock("u", wait=0):  # released normally afterwards
            pass
    finally:
        await kill(child)


async def test_another_node_takes_a_dead_nodes_lock_when_its_heartbeat_lapses(
    redis_url: str, redis: aioredis.Redis
) -> None:
    prefix = new_prefix()
    child = await holder_process(redis_url, prefix, "node-a:8000", ttl=60.0, heartbeat=1.0)
    try:
        await kill(child)
        other = RedisLocker(redis, prefix=prefix, node="node-b:8000", ttl=60, heartbeat_ttl=1.0)
        # Well before the lock's own 60 s TTL: the heartbeat (on Redis's clock) decides.
        async with other.lock("u", wait=10) as held:
            assert not held.lost
        assert await redis.pttl(other._keys("u")[0]) == -2  # released by its new holder
    finally:
        await kill(child)


async def test_a_live_node_whose_loop_stalls_for_a_second_keeps_its_lock(
    redis_url: str, redis: aioredis.Redis
) -> None:
    prefix = new_prefix()
    # The defaults a node runs with (heartbeat 2 s, lock 6 s), and a 1 s stall.
    child = await holder_process(redis_url, prefix, "node-a:8000", ttl=6.0, heartbeat=2.0, stall=1.0)
    assert child.stdout is not None and child.stdin is not None
    try:
        assert (await child.stdout.readline()).strip() == b"stalling"
        other = RedisLocker(redis, prefix=prefix, node="node-b:8000")
        attempts = 0
        awake = asyncio.ensure_future(child.stdout.readline())
        while not awake.done():  # throughout the stall, and a while after it
            with pytest.raises(LockTimeout):
                async with other.lock("u", wait=0, request_release=False):
                    pass
            attempts += 1
            await asyncio.sleep(0.05)
        assert (await awake).strip() == b"awake"
        assert attempts > 1
        verdict = asyncio.ensure_future(child.stdout.readline())
        while not verdict.done():
            with pytest.raises(LockTimeout):
                async with other.lock("u", wait=0, request_release=False):
                    pass
            await asyncio.sleep(0.05)
        assert (await verdict).strip() == b"kept"
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        assert await asyncio.wait_for(child.wait(), 10) == 0
        async with other.lock("u", wait=0):  # given back by compare-and-delete
            pass
    finally:
        await kill(child)


async def test_a_stolen_node_name_loses_its_locks(redis: aioredis.Redis) -> None:
    prefix = new_prefix()
    first = RedisLocker(aioredis.Redis(connection_pool=redis.connection_pool), prefix=prefix, node="twin")
    async with first.lock("u", wait=0) as held:
        fired = asyncio.Event()
        held.on_interrupt(fired.set)
        twin = RedisLocker(redis, prefix=prefix, node="twin")  # a second live process, misnamed
        async with twin.lock("v", wait=0):
            await asyncio.wait_for(fired.wait(), 10)
            assert held.lost  # it stops writing instead of sharing the upload


def test_head_and_a_tuspy_resume_right_after_kill_9_and_restart(
    tus_server_factory: Factory, owner: str, tmp_path: os.PathLike[str]
) -> None:
    # A lock TTL far above the test's length: only the heartbeat can free the lock.
    server = tus_server_factory(lock_ttl=60.0)
    data = os.urandom(6 * MiB)
    with server.client(owner) as client:
        url = create(client, len(data))
        thread = in_thread(lambda: patch(client, url, 0, slow_body(data, pause=0.005)))
        wait_for(lambda: file_size(server.data_path(url)) >= 2 * MiB)
        server.kill()  # SIGKILL mid-body, lock held
        thread.join(30)
    server.restart()
    with server.client(owner) as client:
        response = client.head(url)
        assert response.status_code == 200  # no 423, no waiting for the dead holder
        offset = int(response.headers["upload-offset"])
    assert 2 * MiB <= offset < len(data)
    # tuspy with its defaults (no retries): the uploader's HEAD, then PATCHes.
    time.sleep(0.5)
    tus = tus_client.TusClient(server.files_url, headers={"Authorization": f"Bearer {owner}"})
    source = tmp_path / "source.bin"  # type: ignore[operator]
    source.write_bytes(data)
    uploader = tus.uploader(str(source), url=url, chunk_size=2 * MiB)
    assert uploader.offset == offset
    uploader.upload()
    assert server.data_path(url).read_bytes() == data
    assert finished_runs(server, url) == 1


def test_another_node_takes_over_a_dead_nodes_upload(
    tus_server_factory: Factory, owner: str, tmp_path: os.PathLike[str]
) -> None:
    shared = tmp_path / "shared"  # type: ignore[operator]
    prefix = f"tus-dead-{uuid.uuid4().hex[:6]}:"
    # lock_wait 4 s: above the 2 s heartbeat, as a client's request would wait.
    nodes = [
        tus_server_factory(directory=shared, prefix=prefix, lock_ttl=60.0, lock_wait=4.0) for _ in range(2)
    ]
    data = os.urandom(6 * MiB)
    with nodes[0].client(owner) as client:
        url = create(client, len(data))
        thread = in_thread(lambda: patch(client, url, 0, slow_body(data, pause=0.005)))
        wait_for(lambda: file_size(nodes[0].data_path(url)) >= 2 * MiB)
        nodes[0].kill()
        thread.join(30)
    url = "/files/" + url.rsplit("/", 1)[-1]  # the same upload, through the other node
    with nodes[1].client(owner) as client:
        offset = offset_of(client, url)  # 200 once node 0's heartbeat lapsed, never 423
        assert 2 * MiB <= offset < len(data)
        response = patch(client, url, offset, data[offset:])
        assert response.status_code == 204
    assert nodes[1].data_path(url).read_bytes() == data
    assert finished_runs(nodes[1], url) == 1


def set_key(server: TusServer, name: str, value: str | None) -> None:
    client = sync_redis.Redis.from_url(server.redis_url)
    try:
        if value is None:
            client.delete(server.prefix + name)
        else:
            client.set(server.prefix + name, value)
    finally:
        client.close()


def kill_during_the_finish_hook(server: TusServer, owner: str, data: bytes) -> str:
    """Send every byte, then kill -9 the node before its finish hook completed (it sleeps
    in the hook, or has not reached it yet): the bytes are complete on disk, the finish is
    not recorded. Returns the upload's path."""
    set_key(server, "finish-delay", "3600")  # the hook sleeps under the lock until the kill
    with server.client(owner) as client:
        url = create(client, len(data))
        thread = in_thread(lambda: patch(client, url, 0, data))
        wait_for(lambda: file_size(server.data_path(url)) == len(data))
        server.kill()
        thread.join(30)
    set_key(server, "finish-delay", None)
    assert finished_runs(server, url) == 0
    assert not (server.uploads / (url.rsplit("/", 1)[-1] + ".done")).exists()
    return "/files/" + url.rsplit("/", 1)[-1]


def test_head_finishes_an_upload_whose_node_died_before_the_finish(
    tus_server_factory: Factory, owner: str
) -> None:
    server = tus_server_factory(lock_ttl=60.0)
    data = os.urandom(256 * 1024)
    url = kill_during_the_finish_hook(server, owner, data)
    server.restart()
    with server.client(owner) as client:
        response = client.head(url)
        assert response.status_code == 200
        assert response.headers["upload-offset"] == str(len(data))
        assert "upload-expires" not in response.headers  # a task now, never an expired upload
        assert finished_runs(server, url) == 1
        assert client.head(url).status_code == 200
        assert patch(client, url, len(data), b"").status_code == 204  # a client's late retry
    assert finished_runs(server, url) == 1


async def test_the_sweep_finishes_an_upload_whose_node_died_before_the_finish(
    tus_server_factory: Factory, owner: str, tmp_path: os.PathLike[str]
) -> None:
    # Expiry 1 s: the upload is long past it; it must become a task all the same.
    server = tus_server_factory(lock_ttl=60.0, expiry=1)
    data = os.urandom(64 * 1024)
    url = await asyncio.to_thread(kill_during_the_finish_hook, server, owner, data)
    upload_id = url.rsplit("/", 1)[-1]
    # Another node's sweep (the one that wins the round), with the same hook and store.
    _, handler = build_app(server.uploads, server.redis_url, prefix=server.prefix, expiry=1, node="sweeper:1")
    await asyncio.sleep(1.1)
    rounds = 0
    while finished_runs(server, url) == 0:  # until the dead node's heartbeat lapses (2 s)
        assert await handler.sweep_expired() == 0  # never expired
        rounds += 1
        assert rounds < 400, "the dead node's lock was never taken over"
        await asyncio.sleep(0.05)
    assert (await handler.store.get(upload_id)).finished
    assert await handler.sweep_expired() == 0
    assert finished_runs(server, url) == 1
    assert server.data_path(url).read_bytes() == data


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_drain_interrupts_held_locks_and_every_later_one(kind: str, redis: aioredis.Redis) -> None:
    locker: MemoryLocker | RedisLocker = (
        MemoryLocker() if kind == "memory" else RedisLocker(redis, prefix=new_prefix())
    )
    async with locker.lock("u", wait=0) as held:
        fired = asyncio.Event()
        held.on_interrupt(fired.set)
        assert not held.interrupted
        locker.drain()  # SIGTERM: running PATCHes stop reading and answer
        await asyncio.wait_for(fired.wait(), 5)
        assert held.interrupted and not held.lost
    async with locker.lock("v", wait=0) as later:
        assert later.interrupted  # a PATCH that starts now answers at once too

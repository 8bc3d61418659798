"""The warm child pool with real child processes: reuse, replacement after a timeout,
recycling after N tries and above the memory bound, a clean environment, and nothing
left behind."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from processing.pool import ChildPool
from processing.runner import TryFailed, TryTimedOut
from tests.processing.forking import pool_processes, until

DATA = "héllo wörld straße\n".encode() * 1000


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "upload"
    path.write_bytes(DATA)
    return path


@pytest.fixture
async def pool() -> AsyncIterator[ChildPool]:
    pool = ChildPool(2, max_tries_per_child=1000, max_memory_per_child=512 * 1024 * 1024)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


def child_pids() -> set[int]:
    return {p.pid for p in pool_processes(os.getpid())}


async def test_a_child_places_its_result_under_its_final_name(pool: ChildPool, source: Path, tmp_path: Path):
    temporary, final = tmp_path / "out.tmp", tmp_path / "out"
    size = await pool.run("uppercase", source, temporary, time_limit=10, place_at=final)
    assert not temporary.exists()
    assert final.read_bytes() == DATA.decode().upper().encode() and size == final.stat().st_size


async def test_children_are_reused(pool: ChildPool, source: Path, tmp_path: Path):
    before = child_pids()
    assert len(before) == 2
    for i in range(6):
        size = await pool.run("uppercase", source, tmp_path / f"out{i}", time_limit=10)
        assert (tmp_path / f"out{i}").read_bytes() == DATA.decode().upper().encode()
        assert size == len(DATA.decode().upper().encode())
    assert pool.started == 2
    assert child_pids() == before


async def test_a_child_replaced_after_a_timeout_serves_the_next_task(
    pool: ChildPool, source: Path, tmp_path: Path
):
    before = child_pids()
    with pytest.raises(TryTimedOut):
        await pool.run("fault-hang", source, tmp_path / "hang", time_limit=0.5)
    # fault-hang forked a grandchild: the whole group went, and a fresh child came.
    assert await until(lambda: len(child_pids()) == 2 and child_pids() != before)
    survivors = child_pids() & before
    assert len(survivors) == 1
    for i in range(3):  # both the survivor and the replacement serve tasks
        await pool.run("uppercase", source, tmp_path / f"next{i}", time_limit=10)
        assert (tmp_path / f"next{i}").read_bytes() == DATA.decode().upper().encode()
    assert await until(lambda: pool.started == 3)


async def test_recycling_after_n_tries(source: Path, tmp_path: Path):
    pool = ChildPool(1, max_tries_per_child=2, max_memory_per_child=512 * 1024 * 1024)
    await pool.start()
    try:
        seen = []
        for i in range(6):
            await pool.run("uppercase", source, tmp_path / f"out{i}", time_limit=10)
            assert await until(lambda: len(child_pids()) == 1)
            seen.append(next(iter(child_pids())))
        assert await until(lambda: pool.started == 4)  # the first, then one after every second try
        assert seen[0] != seen[1] and seen[1] == seen[2] and seen[2] != seen[3]
    finally:
        await pool.close()
    assert child_pids() == set()


async def test_recycling_above_the_memory_bound(source: Path, tmp_path: Path):
    pool = ChildPool(1, max_tries_per_child=1000, max_memory_per_child=1024 * 1024)  # 1 MiB: always above
    await pool.start()
    try:
        for i in range(3):
            await pool.run("uppercase", source, tmp_path / f"out{i}", time_limit=10)
        assert await until(lambda: pool.started == 4)  # every try retired its child
        assert await until(lambda: len(child_pids()) == 1)
    finally:
        await pool.close()


async def test_crash_and_cancel_replace_the_child(pool: ChildPool, source: Path, tmp_path: Path):
    with pytest.raises(TryFailed, match="status 3"):
        await pool.run("fault-crash", source, tmp_path / "crash", time_limit=10)
    run = asyncio.create_task(pool.run("fault-hang", source, tmp_path / "hang", time_limit=30))
    await asyncio.sleep(0.3)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await until(lambda: len(child_pids()) == 2)
    assert await until(lambda: pool.started == 4)
    await pool.run("uppercase", source, tmp_path / "after", time_limit=10)


async def test_a_try_that_leaves_a_process_behind_retires_its_child(
    pool: ChildPool, source: Path, tmp_path: Path
):
    before = child_pids()
    await pool.run("fault-fork", source, tmp_path / "fork", time_limit=30)
    assert (tmp_path / "fork").read_bytes() == DATA
    assert await until(lambda: len(child_pids()) == 2)  # the grandchild went with its child
    assert len(child_pids() & before) == 1
    assert await until(lambda: pool.started == 3)


async def test_children_have_none_of_the_workers_secrets(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUSD_PY_JWT_SECRET", "not for operations")
    pool = ChildPool(1, max_tries_per_child=10, max_memory_per_child=512 * 1024 * 1024)
    await pool.start()
    try:
        (child,) = pool_processes(os.getpid())
        environ = child.environ()
        assert not [k for k in environ if k.startswith("TUSD_PY_") and k != "TUSD_PY_ATTEMPT"]
        assert "TUSD_PY_JWT_SECRET" not in environ
        # A fresh interpreter, not a fork of this one: no inherited sockets (no Redis).
        assert [c for c in child.net_connections(kind="inet")] == []
        assert child.ppid() == os.getpid()
    finally:
        await pool.close()
    assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE

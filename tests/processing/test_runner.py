"""The child-process runner with real child processes: success, timeout, crash, cancel,
and a parent killed with -9. No process may be left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from processing.runner import TryFailed, TryTimedOut, run_operation

DATA = "héllo wörld\n".encode() * 1000


def live_in_session(sid: int) -> list[psutil.Process]:
    """Processes of session ``sid`` that are not zombies (a zombie is dead already)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def wait_until(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


async def first_pid(pids: list[int]) -> int:
    """The child's pid, once the runner has spawned it."""
    for _ in range(400):
        if pids:
            return pids[0]
        await asyncio.sleep(0.025)
    raise AssertionError("the child was never spawned")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "upload"
    path.write_bytes(DATA)
    return path


async def test_success_writes_result_and_reports_progress(source: Path, tmp_path: Path):
    target = tmp_path / "result.tmp"
    seen: list[int] = []

    async def on_progress(done: int) -> None:
        seen.append(done)

    pids: list[int] = []
    final = tmp_path / "result"
    size = await run_operation(
        "uppercase",
        source,
        target,
        time_limit=30,
        on_progress=on_progress,
        on_spawn=pids.append,
        place_at=final,
    )
    assert not target.exists()
    assert await asyncio.to_thread(final.read_bytes) == DATA.decode().upper().encode()
    assert size == final.stat().st_size
    assert seen and seen[-1] == len(DATA)
    assert live_in_session(pids[0]) == []


async def test_timeout_kills_the_whole_process_group(source: Path, tmp_path: Path):
    pids: list[int] = []
    run = asyncio.create_task(
        run_operation("fault-hang", source, tmp_path / "r.tmp", time_limit=2.0, on_spawn=pids.append)
    )
    # fault-hang forks a grandchild (without PDEATHSIG): only a group kill reaches it.
    pid = await first_pid(pids)
    seen_two = await asyncio.to_thread(wait_until, lambda: len(live_in_session(pid)) == 2)
    assert seen_two, "the hanging child and its grandchild should both be running"
    with pytest.raises(TryTimedOut, match="timed out after 2 s"):
        await run
    assert await asyncio.to_thread(wait_until, lambda: live_in_session(pid) == [])


async def test_crash_is_a_failed_try(source: Path, tmp_path: Path):
    with pytest.raises(TryFailed, match="exited with status 3") as caught:
        await run_operation("fault-crash", source, tmp_path / "r.tmp", time_limit=30)
    assert not isinstance(caught.value, TryTimedOut)


async def test_reported_error_has_no_paths(tmp_path: Path):
    missing = tmp_path / "secret-dir" / "nope"
    with pytest.raises(TryFailed) as caught:
        await run_operation("uppercase", missing, tmp_path / "r.tmp", time_limit=30)
    assert "I/O error" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)


async def test_cancel_kills_the_child(source: Path, tmp_path: Path):
    pids: list[int] = []
    run = asyncio.create_task(
        run_operation("fault-hang", source, tmp_path / "r.tmp", time_limit=60, on_spawn=pids.append)
    )
    pid = await first_pid(pids)
    assert await asyncio.to_thread(wait_until, lambda: len(live_in_session(pid)) == 2)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await asyncio.to_thread(wait_until, lambda: live_in_session(pid) == [])


def test_child_dies_with_a_parent_killed_with_sigkill(source: Path, tmp_path: Path):
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from processing.runner import run_operation
        def spawned(pid):
            print(pid, flush=True)
        asyncio.run(run_operation("fault-hang", {str(source)!r}, {str(tmp_path / "r.tmp")!r},
                                  time_limit=600, on_spawn=spawned))
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert wait_until(lambda: psutil.pid_exists(child_pid))
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)

        def child_gone() -> bool:
            try:
                return psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        assert wait_until(child_gone), "PR_SET_PDEATHSIG should have killed the child"
    finally:
        # fault-hang's grandchild has no PDEATHSIG (on purpose): clean it up here.
        for proc in live_in_session(child_pid) if "child_pid" in locals() else []:
            proc.kill()
        if parent.poll() is None:
            parent.kill()

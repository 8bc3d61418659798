"""Finding the processes of tries and of warm pool children, for tests that must show
that nothing is left behind. A warm child's command line names its worker, not a task,
so a try's processes are found by the files they hold open (a forked grandchild
inherits them) as well as by command line."""

from __future__ import annotations

import time

import psutil


def _alive(proc: psutil.Process) -> bool:
    return proc.status() != psutil.STATUS_ZOMBIE


def processes_of_task(task_id: str) -> list[psutil.Process]:
    """Live processes whose command line or open files mention ``task_id``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if not _alive(proc):
                continue
            if any(task_id in part for part in proc.cmdline()) or any(
                task_id in f.path for f in proc.open_files()
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def pool_processes(worker_pid: int) -> list[psutil.Process]:
    """Live warm children of worker ``worker_pid`` and everything they forked (a fork
    keeps the command line ``... processing.child --serve --worker <pid>``)."""
    marker = ["--serve", "--worker", str(worker_pid)]
    found = []
    for proc in psutil.process_iter():
        try:
            cmd = proc.cmdline()
            if _alive(proc) and "processing.child" in cmd and cmd[-3:] == marker:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def eventually(predicate, within: float = 15.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``within`` seconds pass (False)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


async def until(predicate, within: float = 15.0) -> bool:
    """:func:`eventually` for async tests: the event loop keeps running while it waits
    (the pool starts its replacement children on it)."""
    import asyncio

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.05)
    return bool(await asyncio.to_thread(predicate))

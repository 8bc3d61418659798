"""A warm pool of child processes per worker, in the manner of Celery's prefork pool.

Starting a fresh interpreter per try costs about 75 ms of CPU; a pool child is started
once and then runs one try after another, one at a time. The guarantees of a one-shot
child (:mod:`processing.runner`) hold for every try:

- a timeout, a cancellation or a crash kills that child's whole process group
  (grandchildren included) and a fresh child takes its place;
- a child dies with its worker, its own children included (``PR_SET_PDEATHSIG`` turns
  the worker's death into a SIGKILL of the child's group, see :mod:`processing.child`);
- a child is recycled after ``max_tries_per_child`` tries, above ``max_memory_per_child``
  bytes of resident memory, and whenever a try left a process behind;
- operations run in a process with none of the worker's state: a fresh interpreter
  (``-P -S``), no ``TUSD_PY_*`` variables, no Redis connection.

ARQ still owns the queue, ``max_jobs``, retries and timeouts: the pool has ``max_jobs``
children, so a job never waits for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from processing.procctl import kill_group, parent_death_hook
from processing.runner import (
    NO_RESULT,
    ProgressCallback,
    TryFailed,
    TryTimedOut,
    child_environment,
    describe_exit,
)

logger = logging.getLogger("processing.pool")


def pool_child_command(worker_pid: int) -> list[str]:
    """How a pool child is started; ``--worker PID`` also lets tests find them."""
    return [sys.executable, "-P", "-S", "-m", "processing.child", "--serve", "--worker", str(worker_pid)]


@dataclass(eq=False)
class _Child:
    proc: asyncio.subprocess.Process
    tries: int = 0
    retired: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.proc.pid


class ChildPool:
    """``size`` warm children; :meth:`run` has the contract of ``runner.run_operation``."""

    def __init__(self, size: int, *, max_tries_per_child: int, max_memory_per_child: int) -> None:
        self.size = size
        self.max_tries_per_child = max_tries_per_child
        self.max_memory_per_child = max_memory_per_child
        self._idle: list[_Child] = []
        self._all: set[_Child] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._closed = False
        self.started = 0
        """Children started so far (tests and the bench read it)."""

    async def start(self) -> None:
        await asyncio.gather(*(self._add() for _ in range(self.size)))

    async def _spawn(self) -> _Child:
        proc = await asyncio.create_subprocess_exec(
            *pool_child_command(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # tracebacks go to the worker's log
            start_new_session=True,
            preexec_fn=parent_death_hook(),
            env=child_environment(0),
        )
        child = _Child(proc)
        self._all.add(child)
        self.started += 1
        return child

    async def _add(self) -> None:
        child = await self._spawn()
        if self._closed or len(self._all) > self.size:  # a busy moment spawned one on demand
            await self._retire(child)
        else:
            self._idle.append(child)

    def _replace_soon(self) -> None:
        """Start a replacement in the background, so the next try finds a warm child."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._add())
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    async def _retire(self, child: _Child) -> None:
        child.retired = True
        kill_group(child.pid)
        with contextlib.suppress(ProcessLookupError):
            await child.proc.wait()
        self._all.discard(child)

    async def _acquire(self) -> _Child:
        while True:
            while self._idle:
                child = self._idle.pop()
                if child.proc.returncode is None:
                    return child
                self._all.discard(child)  # died while idle (killed from outside)
            if not self._spawning:
                return await self._spawn()  # nothing on its way (a spawn failed): start one
            # A replacement is starting: wait for it rather than start a second one.
            await asyncio.wait(list(self._spawning), return_when=asyncio.FIRST_COMPLETED)

    async def run(
        self,
        operation: str,
        source: Path,
        target: Path,
        *,
        time_limit: float,
        attempt: int = 1,
        on_progress: ProgressCallback | None = None,
        place_at: Path | None = None,
    ) -> int:
        """Run one try in a warm child. Returns the result's size when it succeeded
        (``target``, or ``place_at`` when given, then holds the complete, fsynced
        result); raises :class:`TryTimedOut` / :class:`TryFailed`;
        ``CancelledError`` passes through. A child that did not end its try cleanly is
        killed with its group, and replaced, before this returns or raises."""
        child = await self._acquire()
        request = {
            "operation": operation,
            "source": str(source),
            "target": str(target),
            "place_at": None if place_at is None else str(place_at),
            "attempt": attempt,
        }
        keep = False
        try:
            size, keep = await self._converse(child, request, time_limit, on_progress)
            return size
        finally:
            if keep:
                self._idle.append(child)
            else:
                await asyncio.shield(self._retire(child))
                self._replace_soon()

    async def _converse(
        self,
        child: _Child,
        request: dict[str, object],
        time_limit: float,
        on_progress: ProgressCallback | None,
    ) -> tuple[int, bool]:
        """Send one try and read its answer: the result's size, and whether the child may
        serve another."""
        assert child.proc.stdin is not None and child.proc.stdout is not None
        child.tries += 1
        error: str | None = None
        size: int | None = None
        try:
            async with asyncio.timeout(time_limit):
                child.proc.stdin.write(json.dumps(request).encode() + b"\n")
                await child.proc.stdin.drain()
                async for raw in child.proc.stdout:
                    kind, _, value = raw.decode("utf-8", errors="replace").strip().partition(" ")
                    if kind == "P" and on_progress is not None and value.isdigit():
                        await on_progress(int(value))
                    elif kind == "R" and value.isdigit():
                        size = int(value)
                    elif kind == "E":
                        error = value[:300]
                    elif kind == "D":
                        status, rss, clean = (int(v) for v in value.split())
                        if status != 0:
                            raise TryFailed(describe_exit(1, error))
                        if size is None:
                            raise TryFailed(NO_RESULT)
                        return size, (
                            clean == 1
                            and child.tries < self.max_tries_per_child
                            and rss <= self.max_memory_per_child
                        )
        except TimeoutError:
            raise TryTimedOut(f"timed out after {time_limit:g} s") from None
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child died before it read the request: reported below
        # EOF: the child died during the try.
        kill_group(child.pid)
        returncode = await child.proc.wait()
        raise TryFailed(describe_exit(returncode, error))

    async def close(self) -> None:
        """Kill every child (with its group); the worker is stopping."""
        self._closed = True
        for task in list(self._spawning):
            task.cancel()
        await asyncio.gather(*self._spawning, return_exceptions=True)
        await asyncio.gather(*(self._retire(child) for child in list(self._all)))
        self._idle.clear()

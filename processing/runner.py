"""Run one operation in a killable child process, under our own timeout.

ARQ's timeout only cancels the coroutine: work in a subprocess would keep running.
So each try runs ``python -m processing.child`` in its own session (process group),
with ``PR_SET_PDEATHSIG = SIGKILL`` so that a worker killed with -9 takes its child
along. On timeout, cancellation (abort, shutdown) or any error, the whole group is
killed with SIGKILL at once, grandchildren included.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from processing.faults import ATTEMPT_ENV
from processing.procctl import kill_group, parent_death_hook

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
ProgressCallback = Callable[[int], Awaitable[None]]


NO_RESULT = "operation process ended without reporting its result"


class TryFailed(Exception):
    """A try produced no result; ``str(exc)`` is a short message fit for the task record."""


class TryTimedOut(TryFailed):
    """The try ran past the job timeout and its process group was killed."""


def child_command(operation: str, source: Path, target: Path, place_at: Path | None = None) -> list[str]:
    """How a try's child is started (the benchmark starts it the same way)."""
    return [
        sys.executable,
        "-P",  # never import from the worker's working directory
        # No site-packages: the child needs only the stdlib and this package (found
        # through PYTHONPATH), and skipping site shortens its start-up.
        "-S",
        "-m",
        "processing.child",
        operation,
        str(source),
        str(target),
        *([str(place_at)] if place_at is not None else []),
    ]


def child_environment(attempt: int) -> dict[str, str]:
    """The worker's environment minus its own settings (secrets among them), plus the
    try number, and a PYTHONPATH that finds this very ``processing`` package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_PY_")}
    env[ATTEMPT_ENV] = str(attempt)
    paths = [_PACKAGE_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _kill_when_spawned(spawn: asyncio.Future[asyncio.subprocess.Process]) -> None:
    """Done-callback for a spawn whose caller was cancelled: kill what it started."""
    if not spawn.cancelled() and spawn.exception() is None:
        kill_group(spawn.result().pid)


def describe_exit(returncode: int, message: str | None) -> str:
    if message:
        return message
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"operation process killed by {name}"
    return f"operation process exited with status {returncode}"


async def run_operation(
    operation: str,
    source: Path,
    target: Path,
    *,
    time_limit: float,
    attempt: int = 1,
    on_progress: ProgressCallback | None = None,
    on_spawn: Callable[[int], None] | None = None,
    place_at: Path | None = None,
) -> int:
    """Run ``operation`` from ``source`` into ``target`` in a child process.

    Returns the result's size when the child exited 0: ``target`` then holds the
    complete, fsynced result, or ``place_at`` does when given (the child renamed it
    there). Raises :class:`TryTimedOut` after ``time_limit`` seconds, :class:`TryFailed`
    when the child fails; ``CancelledError`` passes through. In every case the child's
    process group is gone when this returns or raises.
    """
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *child_command(operation, source, target, place_at),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # tracebacks go to the worker's log
            start_new_session=True,
            preexec_fn=parent_death_hook(),
            env=child_environment(attempt),
        )
    )
    try:
        # Shielded: on Python 3.11 cancelling create_subprocess_exec half-way can leave
        # it waiting forever for pipes that never connected.
        proc = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        spawn.add_done_callback(_kill_when_spawned)
        raise
    if on_spawn is not None:
        on_spawn(proc.pid)
    error: str | None = None
    size: int | None = None
    try:
        async with asyncio.timeout(time_limit):
            assert proc.stdout is not None
            async for raw in proc.stdout:
                kind, _, value = raw.decode("utf-8", errors="replace").strip().partition(" ")
                if kind == "P" and on_progress is not None and value.isdigit():
                    await on_progress(int(value))
                elif kind == "R" and value.isdigit():
                    size = int(value)
                elif kind == "E":
                    error = value[:300]
            returncode = await proc.wait()
    except TimeoutError:
        raise TryTimedOut(f"timed out after {time_limit:g} s") from None
    finally:
        kill_group(proc.pid)
        if proc.returncode is None:
            await proc.wait()
    if returncode != 0:
        raise TryFailed(describe_exit(returncode, error))
    if size is None:
        raise TryFailed(NO_RESULT)
    return size

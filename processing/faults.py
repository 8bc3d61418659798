"""Operations that misbehave on purpose, to exercise timeouts, retries and crash recovery.

They are registered only when ``enable_fault_operations`` is true
(``TUSD_PY_ENABLE_FAULT_OPERATIONS``, default off), so production never offers them.
They run in the child process like any operation; the child tells them which try this
is through the ``TUSD_PY_ATTEMPT`` environment variable.
"""

from __future__ import annotations

import os
import time
from typing import BinaryIO

from processing.transforms import ProgressFn

ATTEMPT_ENV = "TUSD_PY_ATTEMPT"
SLOW_STEPS = 10
SLOW_STEP_SECONDS = 0.2


def _attempt() -> int:
    return int(os.environ.get(ATTEMPT_ENV, "1"))


def hang(source: BinaryIO, target: BinaryIO, progress: ProgressFn) -> None:
    """Never finish. A forked grandchild hangs too, so killing only the child is not enough:
    the whole process group has to go."""
    progress(0)
    if os.fork() == 0:  # the grandchild: no PDEATHSIG of its own, only the group kill reaches it
        while True:
            time.sleep(60)
    while True:
        time.sleep(60)


def crash(source: BinaryIO, target: BinaryIO, progress: ProgressFn) -> None:
    """Exit with status 3 after writing a little, on every try."""
    target.write(b"partial")
    target.flush()
    os._exit(3)


def crash_once(source: BinaryIO, target: BinaryIO, progress: ProgressFn) -> None:
    """Crash on the first try; later tries copy the input unchanged, so a retry succeeds."""
    if _attempt() == 1:
        crash(source, target, progress)
    slow_copy(source, target, progress, steps=1, step_seconds=0.0)


def slow_copy(
    source: BinaryIO,
    target: BinaryIO,
    progress: ProgressFn,
    *,
    steps: int = SLOW_STEPS,
    step_seconds: float = SLOW_STEP_SECONDS,
) -> None:
    """Copy the input unchanged in ``steps`` slices, ``step_seconds`` apart (about 2 s in
    all), reporting progress after each: a task that is reliably "running" for a while."""
    size = os.fstat(source.fileno()).st_size
    slice_size = max(1, -(-size // steps))
    done = 0
    for _ in range(steps):
        time.sleep(step_seconds)
        chunk = source.read(slice_size)
        target.write(chunk)
        done += len(chunk)
        progress(done)
    import shutil  # test-only path: keep it out of every child's start-up

    shutil.copyfileobj(source, target)
    progress(size)


def fork_then_copy(source: BinaryIO, target: BinaryIO, progress: ProgressFn) -> None:
    """Fork a grandchild that sleeps forever (holding the try's files open), then copy
    slowly: only the group kill of a dying worker, or the pool's check that a try left
    nothing behind, reaches the grandchild."""
    if os.fork() == 0:
        while True:
            time.sleep(60)
    slow_copy(source, target, progress)

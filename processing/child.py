"""The child process: runs operations on files, one try at a time.

    python -m processing.child OPERATION SOURCE TARGET [PLACE_AT]   one try, then exit
    python -m processing.child --serve --worker PID                  a warm pool child

A pool child (:mod:`processing.pool`) reads one JSON request per line on stdin
(``{"operation", "source", "target", "place_at", "attempt"}``), runs it, answers as
below and ends each try with ``D <status> <rss bytes> <clean>``, then waits for the next. It starts
with none of the worker's state (a fresh interpreter, no ``TUSD_PY_*`` variables, no
Redis connection). It is the leader of its own process group and a subreaper; if its
worker dies, ``PR_SET_PDEATHSIG`` sends it SIGTERM, and it SIGKILLs its whole group,
so that a grandchild forked by an operation dies too. ``clean`` is 0 when a try left
a descendant behind: the pool then kills the group and starts a fresh child.

It is started by :mod:`processing.runner` in its own session (process group) with
``PR_SET_PDEATHSIG = SIGKILL``, so it dies with the worker. It reads SOURCE, writes
TARGET (a temporary name), fsyncs it, renames it to PLACE_AT when one is given (the
result's final name: placing it here saves the worker a thread hop per try) and exits 0.

Protocol on stdout, one line per message:
    ``P <bytes done>``   progress, at most ~10 a second
    ``R <bytes>``        the result is complete, fsynced (and in place): its size
    ``E <message>``      why it failed (a short message with no file paths), then exit 1
Tracebacks go to stderr, which is the worker's log.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import BinaryIO

from processing.faults import ATTEMPT_ENV
from processing.operations import get_operation

PROGRESS_INTERVAL = 0.1
WRITEBACK_STEP = 8 * 1024 * 1024
"""Bytes of result after which the kernel is told to start writing them to disk."""


class _WritebackTarget:
    """The result file, with the kernel's writeback started as the result grows.

    The try ends with an fsync. Left alone, the kernel holds the whole result in dirty
    pages and that fsync writes all of it at once (about 30 ms per 100 MB here, a fifth
    of uppercase's time). Every ``WRITEBACK_STEP`` bytes this flushes and calls
    ``posix_fadvise(DONTNEED)`` on what was written since, which starts writeback of
    that range without waiting for it (and lets its pages go once clean), so the final
    fsync only waits for the last few MiB. Durability is unchanged: the fsync decides.
    """

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.fd = file.fileno()
        self.started = 0
        self.pending = 0

    def write(self, data: bytes) -> int:
        written = self.file.write(data)
        self.pending += written
        if self.pending >= WRITEBACK_STEP:
            self.file.flush()
            os.posix_fadvise(self.fd, self.started, self.pending, os.POSIX_FADV_DONTNEED)
            self.started += self.pending
            self.pending = 0
        return written

    def flush(self) -> None:
        self.file.flush()

    def fileno(self) -> int:
        return self.fd


class _Progress:
    """Write ``P <n>`` lines, throttled, so a fast operation does not flood the pipe."""

    def __init__(self) -> None:
        self.last_sent = time.monotonic()  # a try that ends within 0.1 s sends no progress
        self.last_value = -1

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last_sent >= PROGRESS_INTERVAL:
            self.send(done)
            self.last_sent = now

    def send(self, done: int) -> None:
        if done != self.last_value:
            sys.stdout.write(f"P {done}\n")
            sys.stdout.flush()
            self.last_value = done


def _create(path: str) -> BinaryIO:
    """Open the result for writing, making its directory if it went missing (the worker
    made it at start-up; checking on every try would cost every try a system call)."""
    try:
        return open(path, "wb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "wb")


def run(operation: str, source: str, target: str, place_at: str | None = None) -> int:
    progress = _Progress()
    try:
        op = get_operation(operation)
        with open(source, "rb") as src, _create(target) as dst:
            op.function(src, _WritebackTarget(dst), progress)  # type: ignore[arg-type]
            dst.flush()
            os.fsync(dst.fileno())
            done = src.tell()
            size = os.fstat(dst.fileno()).st_size
        if place_at is not None:
            os.replace(target, place_at)
        progress.send(done)
        sys.stdout.write(f"R {size}\n")
        sys.stdout.flush()
        return 0
    except KeyError:
        message = f"unknown operation {operation!r}"
    except OSError as exc:
        # No file names: the message ends up in an API response.
        message = f"I/O error: {exc.strerror or type(exc).__name__}"
    except Exception as exc:
        message = f"operation failed ({type(exc).__name__})"
    import traceback  # only on failure: it costs a tenth of the child's start-up

    traceback.print_exc(file=sys.stderr)
    sys.stdout.write(f"E {message}\n")
    sys.stdout.flush()
    return 1


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _left_descendants() -> bool:
    """Whether a try left a process behind: as a subreaper, every descendant that
    outlives its parent is re-parented to us, so ``waitpid`` sees it."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True  # a descendant is still running


def _die_with_group(_signum: int, _frame: object) -> None:
    os.killpg(0, signal.SIGKILL)  # ourselves and every process a try started


def serve(worker_pid: int) -> int:
    """The warm pool child's loop (see the module's docstring)."""
    from processing.procctl import PR_SET_PDEATHSIG, _prctl, become_subreaper

    signal.signal(signal.SIGTERM, _die_with_group)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # was SIGKILL (set before exec): now the group
    if os.getppid() != worker_pid:
        _die_with_group(0, None)
    become_subreaper()
    for line in sys.stdin:
        request = json.loads(line)
        os.environ[ATTEMPT_ENV] = str(request["attempt"])  # what the fault operations read
        status = run(request["operation"], request["source"], request["target"], request.get("place_at"))
        clean = 0 if _left_descendants() else 1
        sys.stdout.write(f"D {status} {_rss_bytes()} {clean}\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--serve" and argv[1] == "--worker" and argv[2].isdigit():
        return serve(int(argv[2]))
    if len(argv) not in (3, 4):
        sys.stderr.write("usage: python -m processing.child OPERATION SOURCE TARGET [PLACE_AT]\n")
        return 2
    return run(*argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

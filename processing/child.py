"""The child process: runs one operation on one file, then exits.

    python -m processing.child OPERATION SOURCE TARGET

It is started by :mod:`processing.runner` in its own session (process group) with
``PR_SET_PDEATHSIG = SIGKILL``, so it dies with the worker. It reads SOURCE, writes
TARGET (a temporary name the job renames into place), fsyncs it and exits 0.

Protocol on stdout, one line per message:
    ``P <bytes done>``   progress, at most ~10 a second
    ``E <message>``      why it failed (a short message with no file paths), then exit 1
Tracebacks go to stderr, which is the worker's log.
"""

from __future__ import annotations

import os
import sys
import time

from processing.operations import get_operation

PROGRESS_INTERVAL = 0.1


class _Progress:
    """Write ``P <n>`` lines, throttled, so a fast operation does not flood the pipe."""

    def __init__(self) -> None:
        self.last_sent = 0.0
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


def run(operation: str, source: str, target: str) -> int:
    progress = _Progress()
    try:
        op = get_operation(operation)
        with open(source, "rb") as src, open(target, "wb") as dst:
            op.function(src, dst, progress)
            dst.flush()
            os.fsync(dst.fileno())
            done = src.tell()
        progress.send(done)
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


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: python -m processing.child OPERATION SOURCE TARGET\n")
        return 2
    return run(*argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

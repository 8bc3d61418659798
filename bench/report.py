"""Rows of figures, each beside its baseline, printed and written to RESULTS.md."""

from __future__ import annotations

import datetime
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "RESULTS.md"


@dataclass(frozen=True)
class Row:
    scenario: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline  # type: ignore[operator]

    def cells(self) -> list[str]:
        ratio = f"{self.ratio:.2f}" if self.ratio is not None else ""
        baseline = f"{self.baseline:,.1f} ({self.baseline_name})" if self.baseline is not None else ""
        verdict = {True: "met", False: "MISSED", None: ""}[self.met]
        target = f"{self.target} {verdict}".strip()
        return [
            self.scenario,
            self.metric,
            f"{self.value:,.1f} {self.unit}",
            baseline,
            ratio,
            target,
            self.note,
        ]


READING = """
## Reading the figures

- **Ingest**: each mode is measured against the sink doing the same requests (one PUT,
  or 8 MiB PUTs), so the ratio is the cost of the tus work per request (bearer check,
  Redis lock, offset check, expiry) and not of HTTP as such. A single tus PATCH can beat
  the sink: the handler batches the body into 1 MiB writes done in a worker thread while
  the event loop receives the next chunk, where the bare sink writes inline.
- **Ingest peers**: the same 100 MB file, interleaved with our rounds: a raw-socket
  Python sink (`bench/raw_sink.py`: blocking `recv_into` + `os.write`, the floor of HTTP
  in Python on loopback), tuspyserver 4.4 on uvicorn with uvloop/httptools (from the
  peers' venv) and @tus/server 2.4 with its FileStore on Node (from a bench-owned
  node_modules outside the checkout); each tus peer gets a POST and one PATCH, no auth.
- **Concurrent uploads**: three interleaved rounds each of the uvicorn sink, the
  raw-socket sink and tusd-py (medians); memory growth stays flat because bodies are
  streamed. Where the time goes (profiled on this machine with py-spy, perf,
  `INFO commandstats` and psutil CPU times, one round = 320 PATCHes of 1 MiB + 32 POSTs):
  the API spends about 1.5 s of CPU per round (user 0.5-0.7 s, system 0.9-1.0 s) where
  the bare sink spends 0.35-0.9 s (user 0.1 s) for the same bytes, i.e. about 1.5 ms of
  user CPU per request against 0.3 ms. perf: the sink is 61 % kernel page-cache copy
  and 3 % Python; the API is 19 % page-cache copy, about 35 % Python interpreter and
  about 10 % scheduler/futex wake-ups (thread hand-overs). Per PATCH: 3.3 Redis round
  trips (the bearer check's session pipeline, lock acquire, lock release, and the lock
  watcher's refreshes, 96 per round) and 13 Redis commands counted server-side
  (including the creation and finish of each upload); 4 thread hops (description read
  before the lock, again under it, opening the writer, the one 1 MiB `pwritev`). Python
  frames on the event loop: the redis-py send path 6.5 %, the middleware stack 2.5 %
  inclusive (all five are pure ASGI; none but Starlette's route body limit wraps
  `receive`, one coroutine per chunk), the guard protocol's `data_received` 1.2 %,
  PyJWT 0.7 %, our write loop about 1 %. The gap is therefore the fixed cost of a
  request (Redis round trips, Starlette/redis-py Python work, thread wake-ups), not the
  byte path: shrinking it means fewer round trips per PATCH (one lock script that also
  checks the session; one batched refresh for all held locks instead of a watcher task
  per lock) and fewer hops (description and writer opened in one thread hop).
  Since this run: one refresh loop per node replaces the watcher task per lock (it
  saves round trips only while locks are held past 100 ms: slow clients, a busy node),
  and a PATCH reuses the description read before the lock (4 thread hops to 3); in
  alternated runs the ratio went from 0.71 to 0.82 (median of 3). Left: the bearer
  check, lock acquire and release are one round trip each per PATCH.
- **Processing**: enqueue-to-completed includes the queue, a warm child's pipe round trip,
  and the fsync and rename of the result, a durability the in-process floor does not pay; the transformation itself dominates at 100 MB. Median of five interleaved runs each.
  Profiled by hand (the function over 100 MB in fresh interpreters, four passes each,
  several rounds): the same code took 0.48 to 0.81 s from one round to the next with
  under 2,500 page faults and no fsync stall, i.e. the machine's own noise (a shared
  2-core VM), so single runs of this ratio have ranged from 0.47 to 1.10; start-up,
  fsync and the queue add about 0.13 s to the worker's side.
- **Queue latency**: a worker looks at the queue every `TUSD_PY_WORKER_POLL_INTERVAL`
  (50 ms), the floor ARQ itself shows, and at once when a job frees a slot; "completed"
  adds one try in a warm child (no interpreter start).
- **Small tasks**: tries run in a warm pool of `max_jobs` children (Celery prefork's
  model), so a 1 KB task costs about 1.8 ms of worker CPU and 0.6 ms of child CPU instead
  of an interpreter start (about 75 ms). A task is 12 Redis round trips from finish hook
  to `task.completed` (listed in `processing/tasks.py`): our create script, ARQ's enqueue
  (WATCH, EXISTS, MULTI/EXEC), its poll (ZRANGEBYSCORE), its start (WATCH, EXISTS, ZSCORE,
  MULTI/EXEC), `run_job`'s pipeline, our `begin_try` script and our `complete` script.
  The bare ARQ floor is set by its poll, not by Redis: `max_jobs` jobs per 50 ms poll is
  40/s; tusd-py passes it because a freed slot polls at once. What is left against
  Celery is ARQ's own start path (its WATCH/EXISTS/ZSCORE/MULTI is 23 % of the worker's
  busy time in py-spy, its abort check 9.5 %, `finish_job` 8.4 %); within ARQ's public
  API these cannot be batched further, only skipped (job ids the worker already runs).
  The ratio moved between 0.70 and 1.02 across runs on this shared 2-core VM.
- **Job memory**: the child streams in 1 MiB chunks; its peak RSS is the interpreter's,
  the same for 1 KB and 100 MB.
"""

HEADERS = ["scenario", "metric", "value", "baseline (same run)", "ratio", "target", "note"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_table(rows: list[Row]) -> None:
    table = Table(*HEADERS, title="tusd-py bench")
    for row in rows:
        table.add_row(*row.cells())
    Console(width=200).print(table)


def write_markdown(rows: list[Row], command: str, path: Path = RESULTS) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- CPU: {cpu_name()} ({_cores()} cores)",
        f"- Python: {sys.version.split()[0]} on {platform.platform()}",
        f"- reproduce: `{command}` (from the venv; `make bench` runs them all)",
        "",
        "Every figure stands beside a baseline measured in the same run on the same machine;",
        "the ratio is value / baseline. Absolute numbers move from run to run on a shared",
        "2-core machine; ratios move much less.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row.cells()) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n" + READING)


def _cores() -> int:
    import os

    return os.cpu_count() or 1

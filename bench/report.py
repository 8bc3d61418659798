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
  streamed. Two changes to the method since the first recorded run, both because the
  old one did not measure the servers: (1) the clients are `bench/loadgen.py` (request
  heads written from bytes on uvloop) instead of httpx: with httpx the bench process
  sat at 94-99 % of one of the two cores while the API used ~50 % and the machine was
  ~50 % idle, so every contender ran at the client's pace (the loadgen uses ~20 % of a
  core for the same load and all figures roughly doubled); (2) every contender's files
  are removed after its round: writing into page cache never touched before costs a
  third more on this VM (a sink that keeps its files falls from ~390 to ~280 MB/s after
  1.3 GB), which favoured whoever ran after a clean-up. Absolute figures still swing by
  2x between runs as the VM's memory warms (the sink measured 700 to 1,900 MB/s within
  one hour), so only same-run ratios mean anything.
  Where the time goes, profiled with perf, py-spy, `INFO commandstats` and psutil per
  thread: the sink is one thread at 99 % of a core, 65 % of it the kernel's page-cache
  copy and 2 % Python. The API's event loop runs at ~65 % of a core and its threads add
  ~40 %; per PATCH it does what the sink does plus the bearer check (JWT decode and
  one Redis pipeline: revoked token, revoked family, user epoch), the lock (one
  acquire script, one release script; refreshes are one batched call per 100 ms for
  all held locks) and 2 thread hops (open the writer under the lock, one 1 MiB
  `pwritev`, which also opens the writer). The fixed cost of a request, measured with
  2,000 1-byte PATCHes against 1-byte PUTs: 535 us user + 85 us system CPU for the API
  against 35-40 + 300-370 us for the sink (whose system time is creating a file per
  PUT); before this round's changes it was 695 + 210 us. What came off: a PATCH reads
  no description before its lock when this process wrote the upload last
  (`tusd_py/tus/recent.py`; the writer checks existence, offset and last write time
  under the lock), and the writer opens the data in the thread of its first write
  (`tusd_py/tus/filestore.py`): 3 thread hops per 1 MiB PATCH became 1. Thread
  hand-overs were the expensive part under load, not for their CPU but for their wait
  (a futex wake-up and a GIL hand-back while the loop is busy): the second change alone
  took the ratio from 0.71-0.81 to 1.03-1.15 in five alternated runs. Earlier rounds
  had already made it one batched lock refresh per node and no re-read under the lock.
  The ratio depends on what the VM's kernel charges for the page-cache copy, which
  changes by the hour: while it is dear (the sink at 650-750 MB/s, one thread at 99 %
  of a core mostly copying) tusd-py, which copies in worker threads, is ahead; while it
  is cheap (the sink at 1,200-1,900 MB/s) the sink is bound by nothing but its
  request rate and tusd-py's fixed cost per request decides (0.38-0.61 in such runs;
  tusd-py itself stays at 570-770 MB/s in both). Left per PATCH: three Redis round
  trips (session, acquire, release) and the Starlette/redis-py/uvicorn Python around
  them (middleware stack ~6 % of the API's samples, the redis-py send path ~4 %);
  checking the session inside the lock script would save one round trip but couple
  auth to the tus locker.
- **Processing**: enqueue-to-completed includes the queue, a warm child's pipe round
  trip, and the fsync and rename of the result. Two texts: the mixed one (non-ASCII in
  every line, so every chunk takes the exact UTF-8 path; its floor writes plainly and
  skips the fsync, as before) and an ASCII one (the per-chunk `bytes.upper` fast path;
  its floor writes, fsyncs and renames as a try's child does). Every run writes a new
  result file and all results are removed after each of the five interleaved repeats:
  on this VM, writing into page cache never touched before costs up to 1.6x more (a
  100 MB result into a new file took 475-500 ms, over a file just removed 300-330 ms),
  and the floor used to overwrite one file while the worker's results piled up. That is
  also why the ASCII floor reads ~540 MB/s when it writes a new file and 1.3 GB/s when
  it overwrites one: the transformation itself is `bytes.upper` at ~3.5 GB/s in the
  same run (29 ms per 100 MB); the rest is reading, the kernel's page-cache copy and
  the fsync. Single runs range widely (the machine's own noise, a shared 2-core VM).
- **Queue latency**: the finish hook rings the workers after enqueuing
  (`processing/wake.py`: one PUBLISH; each worker listens on its own connection), and a
  worker with a free slot reads the queue at once; it also looks every
  `TUSD_PY_WORKER_POLL_INTERVAL` (50 ms), which is all a bare ARQ worker does, hence
  its ~25 ms median. "Start" is measured by the server's clocks from the task's creation
  (a try often begins before the last PATCH's answer reaches the client); timestamps
  have millisecond resolution. "Completed" adds one try in a warm child.
- **Small tasks**: tries run in a warm pool of `max_jobs` children (Celery prefork's
  model) instead of an interpreter start each (about 75 ms). tusd-py and Celery
  alternate three rounds each and each reports its median: Celery alone has ranged
  from 390 to 856 tasks/s across runs on this VM. A task is 10 Redis round trips from
  finish hook to `task.completed`, listed in `processing/tasks.py`; on the worker's
  side: one script that reads the queue and claims (after a freed slot or a doorbell
  ring; ARQ's own poll reads with ZRANGEBYSCORE and claims each job with WATCH, EXISTS,
  ZSCORE and MULTI/EXEC), `run_job`'s pipeline, our `begin_try`, the quota charge and
  `complete` scripts, then ARQ's `finish_job` pipeline. The bare ARQ floor is set by its
  poll, not by Redis: `max_jobs` jobs per 50 ms poll is 40/s.
  What bounds tusd-py here is the worker's event loop, not Redis or the children.
  psutil over 900-task drains: before this round's last changes the worker spent
  1.5-1.6 ms of CPU per task (the children 0.3-0.4, Redis 0.3), i.e. about 90 % of a
  core at 600 tasks/s. Two changes took it to 0.94-1.04 ms and the drain from 532-607
  to 787-885 tasks/s: the look after a freed slot reads the queue and claims in one
  script (`_CLAIM_NEXT` in `processing/worker.py`; it was a ZRANGEBYSCORE of up to 100
  ids and then a claim per job), and the child renames its fsynced result into place
  and reports its size on its pipe (the worker's thread hop for rename and stat cost
  0.48 ms of wall time per task and the futex and self-pipe wake-ups of a thread).
  Medians inside a slot now (1,200 tasks): `begin_try` 0.28 ms, the child's pipe round
  trip 0.96 ms (1 KB read, upper-cased, written, fsynced and renamed), the charge
  0.29 ms, `complete` 0.41 ms, ARQ's `finish_job` 0.32 ms, the look-and-claim 0.35 ms;
  ARQ's `run_job` from its start pipeline to the end of `finish_job` 3.1 ms, run two at
  a time. Celery prefetches messages while its children work; so does tusd-py
  (`processing/slots.py`): ARQ gets `max_jobs + 1` slots and a claimed job waits for
  one of `max_jobs` try slots with its bookkeeping done (its task still `queued`, its
  start given back to ARQ's counter, its claim kept by a lease); the wait is ~0 at the
  median. Tried and left out: freeing the slot right after the rename (615/581/557
  against 617/590/532 tasks/s alternated) and two prefetched jobs instead of one (within
  the noise, and it holds more work away from other idle workers). Left: folding the
  charge into `complete` would save one more round trip (about 0.3 ms of a slot's time)
  but tie the task store's script to the ledger's. The drain is watched by polling the
  last task only (fetching each task as it ended took CPU from the worker).
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

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
- **Concurrent uploads**: 32 clients at once, each 10 MB, in three request sizes, each
  against the sinks doing the same requests: one PATCH per file (what tus-js-client, Uppy
  and tuspy send by default), 8 MiB PATCHes (what our CLI and the web console send) and
  1 MiB PATCHes (ten requests per file: the work per request). The two sizes clients
  send carry the >= 1.0 target; the 1 MiB mode is measured and reported. After one
  unmeasured round each, five interleaved rounds of the uvicorn sink, the raw-socket
  sink, tuspyserver, @tus/server and tusd-py (medians; the note lists the rounds), each
  round starting with the next contender (with the order fixed, tusd-py's CPU per MiB
  read 1.5-2.4 ms from run to run while the sink's stayed at 1.1-1.2; rotated, 1.5-1.6
  in four runs); every contender's files are removed after its round. The clients are
  `bench/loadgen.py` (request heads written from bytes on uvloop): with httpx the bench
  process sat at 94-99 % of a core and every contender ran at the client's pace.
  **Where the time goes.** One API process spends about a core on its event loop under
  this load (psutil per thread: about 90 %), so by default `tusd-py api` runs one
  process per usable CPU on one port (`TUSD_PY_API_PROCESSES`, `tusd_py/api_nodes.py`):
  here two. One process, measured the same way in an isolated run: 897, 824 and 513
  MB/s (1.07, 0.96 and 0.48 of the sink in that run) for one PATCH per file, 8 MiB and
  1 MiB PATCHes; two processes in four isolated runs: 1.22-1.37, 1.13-1.20 and 0.65-0.72.
  The work per MiB is the "server CPU per MiB" row (every thread of every API process,
  user + system, against the sink's one process): 1.4-1.6 ms with the sizes clients
  send against the sink's 1.1-1.2 ms, so two processes on two cores pass the sink, whose
  one process keeps one core busy. With 1 MiB PATCHes the sink spends 0.8-1.0 ms per
  MiB in all, less than one
  authenticated, locked PATCH costs here: 0.74-0.92 ms of CPU for a 100-byte PATCH,
  sequential or 32 at once (of which the bearer check's Redis pipeline, the lock's
  acquire and release scripts, each 70-120 us of redis-py on the client side, are
  about 40 % of the loop's time, py-spy `--gil`), so that mode stays below the sink
  while ahead of both tus peers. This round also took the lock off a creation POST
  without a body (nothing to write or finish, nobody else knows the id): a POST's CPU
  went from 1.65 to 1.05 ms. Earlier rounds took off the JWT decode (a verified token
  is remembered per process; its expiry and session are still checked on every
  request) and Starlette's per-route body limit on the tus routes. Tried and left out:
  one writer thread instead of the executor's six (+4 %, but one slow write would stall
  every upload), 2 MiB batches (+3-5 %, but 32 uploads would hold 128 MiB of batches),
  no socket timeout on the API's Redis client (+4 %, but a frozen Redis must answer
  423/503 within a second), `RWF_NOWAIT` writes from the loop (ext4 refuses them for
  buffered writes). **The VM.** This guest returns freed memory to the host at once
  (virtio-balloon free page reporting, `page_reporting_order` 9, `min_free_ms` 0), so
  page cache written into pages the host has taken back costs ~2.2 ms of system time per
  MiB instead of ~0.2 (32 x 10 MB written from 1 to 12 threads: 428 MB/s the first time,
  5-8 GB/s after). Whichever contender writes into such pages in a round pays for it:
  single rounds of every contender move by up to 2x, and the medians of interleaved
  rounds are what the targets compare. The same VM took a single 100 MB stream into the
  bare sink at 283 MB/s in one full run of this session and at 804 in the next.
- **Processing**: enqueue-to-completed includes the queue, a warm child's pipe round
  trip, and the fsync and rename of the result. Two texts: the mixed one (non-ASCII in
  every line, so every chunk takes the exact UTF-8 path; its floor writes plainly and
  skips the fsync, as before) and an ASCII one (the per-chunk `bytes.upper` fast path;
  its floor writes, fsyncs and renames as a try's child does). Every run writes a new
  result file, starts with `os.sync()` and is followed by the removal of every result
  and upload; within a repeat the floor and the worker take turns going first. Removing
  files after every run rather than after every repeat is what makes the ASCII rows
  measure the code: this VM's disk takes an fsynced 100 MB at ~1.3 GB/s into blocks it
  has written before but at ~300 MB/s into blocks it never has (the host backs a fresh
  VM's disk lazily), and with one repeat's files removed only at its end the run that
  came second wrote into fresh blocks: the worker's ASCII figure read 295, 1,282, 291,
  1,250 and 296 MB/s over five repeats, slow exactly when it followed the floor. The
  transformation itself is `bytes.upper` at ~2.6 GB/s in memory; the rest of the
  in-process figure is reading, the page-cache copy and the fsync.
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
  side: one script that reads the queue and claims for every free slot (at once after
  a freed slot or a doorbell ring, and for ARQ's regular poll; ARQ itself claims each
  job with WATCH, EXISTS, ZSCORE and MULTI/EXEC), `run_job`'s pipeline, our `begin_try`, the quota charge and
  `complete` scripts, then ARQ's `finish_job` pipeline. The bare ARQ floor is set by its
  poll, not by Redis: `max_jobs` jobs per 50 ms poll is 40/s.
  What bounds tusd-py here is the worker's event loop, not Redis or the children.
  psutil over 900-task drains: before this round's last changes the worker spent
  1.5-1.6 ms of CPU per task (the children 0.3-0.4, Redis 0.3), i.e. about 90 % of a
  core at 600 tasks/s. Two changes took it to 0.94-1.04 ms and the drain from 532-607
  to 787-885 tasks/s: the look after a freed slot reads the queue and claims in one
  script (`_CLAIM` in `processing/worker.py`; it was a ZRANGEBYSCORE of up to 100
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

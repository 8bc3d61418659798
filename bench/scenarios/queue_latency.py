"""4. From the task's creation (the finish hook, enqueuing its job) to the try's start,
and from the last PATCH answered to ``task.completed`` on SSE.

"Start" uses the server's clocks: since the finish hook rings the workers
(:mod:`processing.wake`), a try often begins before the last PATCH's answer reaches
the client, so the client's clock would give negative figures. Uploads of 1 KB go one at a time (each waits for the previous task's completion
event), so the figures are latency, not queueing. The floor for "start" is a
bare ARQ worker with the same poll delay running a no-op job; the floor for
"completed" is that plus one try in a warm pool child, run directly.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from arq.connections import RedisSettings, create_pool

from bench.harness import BenchEnv, parse_time, percentile, text_file
from bench.report import Row
from processing.pool import ChildPool
from tests.support import ChildProcess
from tusd_py.settings import Settings

POLL_DELAY = Settings().worker_poll_interval  # the default the app runs workers with
START_TARGET_MS = 50
# A random pause before each sample, up to one poll interval, so that samples do not
# lock onto the worker's poll phase (one at a time, each would land just after a poll).
JITTER = POLL_DELAY
COMPLETED_TARGET_MS = 250


class CompletionListener:
    """Reads ``/events`` in a thread and notes when each ``task.completed`` arrives."""

    def __init__(self, env: BenchEnv) -> None:
        self._env = env
        self.arrivals: dict[str, float] = {}
        self._arrived = threading.Condition()
        self._ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def _listen(self) -> None:
        with (
            httpx.Client(base_url=self._env.base_url, headers=self._env.user.headers, timeout=None) as client,
            client.stream("GET", "/events") as response,
        ):
            self._ready.set()
            event = ""
            for line in response.iter_lines():
                if self._stop:
                    return
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "task.completed":
                    task_id = json.loads(line.split(":", 1)[1])["id"]
                    with self._arrived:
                        self.arrivals[task_id] = time.time()
                        self._arrived.notify_all()

    def __enter__(self) -> CompletionListener:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True

    def wait_for(self, task_id: str, timeout: float = 60) -> float:
        with self._arrived:
            if not self._arrived.wait_for(lambda: task_id in self.arrivals, timeout):
                raise TimeoutError(f"no task.completed for {task_id}")
            return self.arrivals[task_id]


def tusd_latencies(env: BenchEnv, count: int) -> tuple[list[float], list[float]]:
    source = text_file(env.data_dir, 1024)
    starts, completions = [], []
    with CompletionListener(env) as listener, env.client() as client:
        for _ in range(count):
            time.sleep(random.uniform(0, JITTER))
            task_id, answered = env.upload_file(client, source, 1024)
            completed = listener.wait_for(task_id)
            task = client.get(f"/tasks/{task_id}").json()
            starts.append(parse_time(task["started_at"]) - parse_time(task["created_at"]))
            completions.append(completed - answered)
    return starts, completions


async def _arq_latencies(redis_url: str, queue: str, count: int) -> list[float]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue)
    latencies = []
    try:
        for _ in range(count):
            await asyncio.sleep(random.uniform(0, JITTER))
            key = f"bench:floor:{uuid.uuid4().hex}"
            enqueued = time.time()
            await pool.enqueue_job("mark_start", key)
            while (started := await pool.get(key)) is None:  # noqa: ASYNC110 (polling Redis is the point)
                await asyncio.sleep(0.001)
            latencies.append(float(started) - enqueued)
    finally:
        await pool.aclose()
    return latencies


def arq_floor(env: BenchEnv, count: int) -> list[float]:
    queue = f"bench:floor:{uuid.uuid4().hex}"
    worker = ChildProcess(
        "arq-floor",
        [sys.executable, "-m", "bench.arq_floor", env.redis.url, queue, str(POLL_DELAY)],
        env.workdir / "arq-floor.log",
    ).start()
    try:
        time.sleep(1.0)
        return asyncio.run(_arq_latencies(env.redis.url, queue, count))
    finally:
        worker.stop()


def child_seconds(source: Path, target: Path, count: int = 50) -> list[float]:
    """One try in a warm pool child (as the worker runs it) on a 1 KB file: the floor of
    the work itself, pipe round trip, fsync and all."""

    async def measure() -> list[float]:
        pool = ChildPool(1, max_tries_per_child=10 * count, max_memory_per_child=1 << 30)
        await pool.start()
        runs = []
        try:
            await pool.run("uppercase", source, target, time_limit=30)  # warm up
            for _ in range(count):
                started = time.perf_counter()
                await pool.run("uppercase", source, target, time_limit=30)
                runs.append(time.perf_counter() - started)
        finally:
            await pool.close()
        return runs

    return asyncio.run(measure())


def run(env: BenchEnv, scale: float) -> list[Row]:
    count = max(10, int(200 * scale))
    starts, completions = tusd_latencies(env, count)
    floor = arq_floor(env, count)
    child = child_seconds(text_file(env.data_dir, 1024), env.workdir / "child.out")
    completed_floor = percentile(floor, 50) + percentile(child, 50)
    ms = 1000.0
    return [
        Row(
            "4 queue latency",
            f"start p50 ({count} x 1 KB)",
            percentile(starts, 50) * ms,
            "ms",
            percentile(floor, 50) * ms,
            "bare ARQ no-op",
            f"< {START_TARGET_MS} ms",
            percentile(starts, 50) * ms < START_TARGET_MS,
        ),
        Row(
            "4 queue latency",
            "start p99",
            percentile(starts, 99) * ms,
            "ms",
            percentile(floor, 99) * ms,
            "bare ARQ no-op",
        ),
        Row(
            "4 queue latency",
            "completed on SSE p50",
            percentile(completions, 50) * ms,
            "ms",
            completed_floor * ms,
            "ARQ + warm child",
            f"< {COMPLETED_TARGET_MS} ms",
            percentile(completions, 50) * ms < COMPLETED_TARGET_MS,
        ),
        Row("4 queue latency", "completed on SSE p99", percentile(completions, 99) * ms, "ms"),
    ]

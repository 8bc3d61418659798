"""A real ARQ worker process through real Redis outages: redis-server killed with -9 and
started again on the same port and AOF dir, with tries running and tasks queued; and a
worker that starts while Redis is away, or is told to stop while Redis is away."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from processing.tasks import EventName, TaskStatus
from tests.processing.forking import processes_of_task
from tests.processing.harness import Bench, open_bench
from tests.support import async_wait_until, free_port
from tusd_py.embedded_redis import RedisProcess


class Outage:
    """A redis-server of this test's own, with an AOF, that can be killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.server = RedisProcess(workdir, port=free_port(), persistent=True)

    def start(self) -> str:
        return self.server.start()

    def kill(self) -> None:
        assert self.server.process is not None
        os.kill(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(10)


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    outage = Outage(tmp_path / "redis")
    outage.start()
    yield outage
    outage.server.stop()


@pytest.fixture
async def bench(tmp_path: Path, outage: Outage) -> AsyncIterator[Bench]:
    bench = await open_bench(tmp_path, outage.server.url)
    try:
        yield bench
    finally:
        await asyncio.to_thread(bench.stop_workers)
        await bench.arq.aclose()


async def log_says(bench: Bench, text: str) -> bool:
    return text in bench.logs()


async def test_tries_that_end_during_an_outage_are_recorded_once_and_the_queue_runs_after(
    bench: Bench, outage: Outage
):
    payloads = [os.urandom(50_000 + i) for i in range(4)]
    tasks = [await bench.submit(p, operation="fault-slow") for p in payloads]  # ~2 s each
    worker = bench.start_worker()  # max_jobs=2: two run, two wait in the queue
    running = [
        await bench.wait_for(t.id, lambda t: t.status is TaskStatus.PROCESSING and t.progress_bytes > 0)
        for t in tasks[:2]
    ]
    outage.kill()
    # The running tries finish while Redis is away (their results are renamed into place).
    for task in running:
        await async_wait_until(
            lambda task=task: asyncio.to_thread(bench.config.result_path(task.id).exists),
            within=20, what="the result file in place during the outage",
        )  # fmt: skip
    # Longer than lease_ttl (3 s): the in-progress keys of the running jobs expire.
    await async_wait_until(lambda: log_says(bench, "worker: Redis unavailable"), within=10)
    await asyncio.sleep(4)
    assert worker.alive(), bench.logs()
    outage.start()

    finals = [await bench.wait_for(t.id, lambda t: t.status.is_final, within=30) for t in tasks]
    assert worker.alive()
    for task, final, payload in zip(tasks, finals, payloads, strict=True):
        assert final.status is TaskStatus.COMPLETED, final
        assert final.attempts == 1, final  # recorded, not run again
        assert bench.config.result_path(task.id).read_bytes() == payload
        names = [e.name for e in await bench.events_of(task.id)]
        assert names.count(EventName.COMPLETED) == 1, names
    # The tries record their outcomes themselves; ARQ's finish of each job waits for the
    # poll loop to find Redis again (up to a second of backoff later), so wait for that too.
    await async_wait_until(lambda: log_says(bench, "worker: Redis is back"), within=10)
    await async_wait_until(
        lambda: _queue_empty(bench), within=10, what="ARQ's bookkeeping done too"
    )  # fmt: skip
    log = worker.log()
    assert "Traceback" not in log, log
    assert log.count("worker: Redis unavailable") == 1, log
    assert log.count("worker: Redis is back") == 1, log
    assert await bench.arq.zcard(bench.config.queue_name) == 0


async def _queue_empty(bench: Bench) -> bool:
    return await bench.arq.zcard(bench.config.queue_name) == 0


async def test_a_worker_started_before_redis_waits_for_it(bench: Bench, outage: Outage):
    task = await bench.submit(b"waiting for redis")
    outage.kill()
    worker = bench.start_worker()
    await async_wait_until(lambda: log_says(bench, "worker: Redis unavailable"), within=20)
    await asyncio.sleep(6)  # longer than ARQ's own 5 connection attempts
    assert worker.alive(), bench.logs()
    outage.start()
    final = await bench.wait_for(task.id, lambda t: t.status.is_final, within=30)
    assert final.status is TaskStatus.COMPLETED
    assert bench.config.result_path(task.id).read_bytes() == b"WAITING FOR REDIS"
    assert "Traceback" not in worker.log()


async def test_sigterm_during_an_outage_stops_the_worker_and_its_children(bench: Bench, outage: Outage):
    task = await bench.submit(os.urandom(10_000), operation="fault-hang")
    worker = bench.start_worker()
    await bench.wait_for(task.id, lambda t: t.status is TaskStatus.PROCESSING)
    outage.kill()
    await async_wait_until(lambda: log_says(bench, "worker: Redis unavailable"), within=20)
    worker.send_signal(signal.SIGTERM)
    status = await asyncio.to_thread(worker.wait, 20)
    assert status == 0, bench.logs()
    assert "Traceback" not in worker.log(), worker.log()
    await async_wait_until(
        lambda: asyncio.to_thread(lambda: not processes_of_task(task.id)), within=5, what="no child left"
    )

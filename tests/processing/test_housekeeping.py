"""The housekeeping sweep against real Redis and real files (run in-process: its
schedule is ARQ's cron, its work is :func:`processing.housekeeping.sweep`)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from arq.constants import abort_jobs_ss, job_key_prefix, result_key_prefix

from processing.housekeeping import LOST_AFTER_MS, housekeeping, sweep
from processing.jobs import WorkerState
from processing.tasks import TaskStatus, now_ms
from tests.processing.harness import Bench, open_bench
from tusd_py.tus.filestore import FileStore

DAY_MS = 86_400_000


@pytest.fixture
async def bench(tmp_path: Path, redis_database: str) -> AsyncIterator[Bench]:
    bench = await open_bench(tmp_path, redis_database, result_retention=3600)
    try:
        yield bench
    finally:
        await bench.arq.aclose()


def touch(path: Path, data: bytes = b"x") -> Path:
    path.write_bytes(data)
    return path


async def test_retention_removes_records_results_and_uploads(bench: Bench):
    config = bench.config
    old = await bench.submit(b"old")
    running = await bench.submit(b"still running")
    started = await bench.tasks.start_try(old, 1, None)
    await bench.tasks.complete(started, 1)
    await bench.tasks.start_try(running, 1, None)
    files = [
        touch(config.result_path(old.id)),
        touch(config.results_dir / f"{old.id}.1.abcd.tmp"),
        touch(bench.uploads_dir / f"{old.id}.info"),
    ]
    kept = [bench.uploads_dir / running.id, touch(bench.uploads_dir / f"{running.id}.info")]

    # Within retention nothing goes.
    uploads = FileStore(bench.uploads_dir)  # what the app's wiring hands the worker
    report = await sweep(bench.tasks, bench.arq, config, uploads=uploads)
    assert report.deleted == 0 and all(p.exists() for p in files)

    later = now_ms() + config.result_retention * 1000 + 1000
    report = await sweep(bench.tasks, bench.arq, config, now=later, uploads=uploads)
    assert report.deleted == 1
    assert await bench.tasks.get(old.id) is None
    assert not (bench.uploads_dir / old.id).exists()
    assert not any(p.exists() for p in files)
    assert all(p.exists() for p in kept)
    assert (await bench.tasks.get(running.id)).status is TaskStatus.PROCESSING
    page = await bench.tasks.list_for(bench.owner)
    assert [t.id for t in page.tasks] == [running.id]

    again = await sweep(bench.tasks, bench.arq, config, now=later, uploads=uploads)  # idempotent
    assert again.deleted == 0


async def test_lost_jobs_are_requeued_or_failed(bench: Bench):
    queued = await bench.submit(b"a")
    processing = await bench.submit(b"b")
    healthy = await bench.submit(b"c")
    await bench.tasks.start_try(processing, 1, None)
    for task in (queued, processing):  # as if ARQ had expired or dropped the job
        await bench.arq.delete(job_key_prefix + task.id)
        await bench.arq.zrem(bench.config.queue_name, task.id)
    # An earlier job of the same id left its result: ARQ's dedup would refuse the id.
    await bench.arq.set(result_key_prefix + queued.id, b"old result", ex=600)

    report = await sweep(bench.tasks, bench.arq, bench.config, now=now_ms() + LOST_AFTER_MS + 1000)
    assert (report.requeued, report.failed_lost) == (1, 1)
    assert await bench.arq.exists(job_key_prefix + queued.id)
    assert await bench.arq.zscore(bench.config.queue_name, queued.id) is not None
    failed = await bench.tasks.get(processing.id)
    assert failed.status is TaskStatus.FAILED and "lost" in failed.error
    assert (await bench.tasks.get(healthy.id)).status is TaskStatus.QUEUED


async def test_stale_temporaries_and_abort_requests_go(bench: Bench):
    stale = touch(bench.config.results_dir / "dead.1.beef.tmp")
    fresh = touch(bench.config.results_dir / "live.1.cafe.tmp")
    long_ago = time.time() - 3600
    os.utime(stale, (long_ago, long_ago))
    await bench.arq.zadd(abort_jobs_ss, {"ancient": now_ms() - DAY_MS, "recent": now_ms()})
    report = await sweep(bench.tasks, bench.arq, bench.config)
    assert report.temp_files == 1
    assert not stale.exists() and fresh.exists()
    assert await bench.arq.zrange(abort_jobs_ss, 0, -1) == [b"recent"]


async def test_only_one_sweeper_at_a_time(bench: Bench):
    ctx = {"redis": bench.arq, "state": WorkerState(bench.config, bench.tasks, bench.events)}
    outcomes = await asyncio.gather(*(housekeeping(ctx) for _ in range(5)))
    assert sum(not o.startswith("skipped") for o in outcomes) >= 1
    assert sum(o.startswith("skipped") for o in outcomes) >= 1
    assert not await bench.arq.exists("tusd:housekeeping:lock")  # released

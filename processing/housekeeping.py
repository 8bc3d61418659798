"""Housekeeping: forget old tasks and their files, and leave nothing stuck.

Runs every minute on every worker (an ARQ cron job) *and* on every API node (the app's
lifespan calls :func:`sweep_once` through ``tusd_py.periodic.every``), always under one
Redis lock (``SET NX PX``, released by compare-and-delete), so that at most one process
sweeps at a time. Why API nodes too: the recovery of lost tasks and the retention of
results and uploads must not depend on a worker being up (workers scaled to zero, a
worker crash-looping, a deployment where the workers are down for hours); the API
nodes are the processes that are always there. Every step is idempotent: a sweep cut
short by a crash is finished by the next one.

1. Finished tasks older than ``result_retention`` (by finish time): the record, its
   index entries, the result ``<results_dir>/<id>`` (and any ``<id>.*`` temporary), and
   the upload, through the :class:`~processing.uploads.UploadRemover` the app hands in
   (the tus store: processing does not know its layout); their bytes leave the
   owner's storage quota (:mod:`processing.usage`).
2. Unfinished tasks older than ``LOST_AFTER`` whose ARQ job no longer exists (expired
   after a day in the queue, or dropped by ARQ): a ``queued`` one is enqueued again (an
   old ``arq:result:<id>`` that would make ARQ refuse the id is dropped first), a
   ``processing``/``retrying`` one is failed with the reason. Nothing stays unfinished
   forever.
3. Temporary result files of tries that died with their worker.
4. ARQ abort requests left behind for jobs that had already ended (ARQ never removes
   them, issue #485).

Unfinished uploads that expired are the API's business, not this job's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix

from processing.config import ProcessingConfig
from processing.records import KEY_PREFIX, TaskStatus, now_ms
from processing.submit import JOB_NAME
from processing.tasks import TaskStore
from processing.uploads import UploadRemover
from processing.usage import StorageLedger

if TYPE_CHECKING:  # the API runs sweep_once too, and must not load the worker's job
    from processing.jobs import WorkerState

logger = logging.getLogger("processing.housekeeping")

LOCK_KEY = KEY_PREFIX + "housekeeping:lock"
LOCK_TTL_MS = 55_000
LOST_AFTER_MS = 5 * 60_000
"""An unfinished task is only checked for a lost job after this long (its job is
enqueued right after the task is created; this leaves a wide margin)."""
STALE_ABORT_MS = 10 * 60_000
BATCH = 200
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class SweepReport:
    deleted: int = 0
    requeued: int = 0
    failed_lost: int = 0
    temp_files: int = 0
    skipped: bool = False


def remove_result_files(config: ProcessingConfig, task_id: str) -> int:
    """Delete a task's result and temporaries; return the count. Blocking (run it in a
    thread)."""
    removed = 0
    directory = config.results_dir
    for path in [directory / task_id, *directory.glob(f"{task_id}.*")]:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            logger.warning("not removing directory %s", path)
    return removed


def remove_stale_temporaries(results_dir: Path, older_than: float) -> int:
    """Delete ``*.tmp`` results not touched for ``older_than`` seconds. Blocking."""
    removed = 0
    cutoff = time.time() - older_than
    for path in results_dir.glob("*.tmp"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


async def sweep(
    tasks: TaskStore,
    arq: ArqRedis,
    config: ProcessingConfig,
    now: int | None = None,
    *,
    uploads: UploadRemover | None = None,
    usage: StorageLedger | None = None,
) -> SweepReport:
    """One pass of all four steps (no lock: see :func:`housekeeping`). Without
    ``uploads`` (a processing-only bench) retention removes records and results only."""
    now = now_ms() if now is None else now
    report = SweepReport()

    # 1. retention
    cutoff = now - config.result_retention * 1000
    while ids := await tasks.finished_before(cutoff, BATCH):
        for task_id in ids:
            task = await tasks.get(task_id)
            if task is None:
                await tasks.drop_from_index(task_id, active=True, finished=True)
            elif not await tasks.delete(task):
                await tasks.drop_from_index(task_id, active=False, finished=True)  # unfinished
                continue
            await asyncio.to_thread(remove_result_files, config, task_id)
            if uploads is not None:
                await uploads.remove(task_id)
            if usage is not None and task is not None:
                await usage.release_task(task.owner, task_id)
            report.deleted += 1

    # 2. lost jobs
    for task_id in await tasks.active_before(now - LOST_AFTER_MS, 5 * BATCH):
        async with arq.pipeline(transaction=False) as pipe:
            pipe.exists(job_key_prefix + task_id)
            pipe.exists(in_progress_key_prefix + task_id)
            job_exists, running = await pipe.execute()
        if job_exists or running:
            continue
        task = await tasks.get(task_id)
        if task is None or task.status.is_final:
            await tasks.drop_from_index(task_id, active=True, finished=task is None)
        elif task.status is TaskStatus.QUEUED:
            # ARQ refuses a job id while an old ``arq:result:<id>`` exists (its dedup);
            # that result belongs to an earlier, finished job of this id: drop it.
            await arq.delete(result_key_prefix + task_id)
            if await arq.enqueue_job(JOB_NAME, task_id, _job_id=task_id) is not None:
                report.requeued += 1
        elif await tasks.fail(task, "the task's job was lost; please upload again") is not None:
            report.failed_lost += 1

    # 3. temporaries of dead tries
    report.temp_files = await asyncio.to_thread(
        remove_stale_temporaries, config.results_dir, max(2 * config.job_timeout, 600.0)
    )

    # 4. abort requests nobody will ever consume
    await arq.zremrangebyscore(abort_jobs_ss, "-inf", now - STALE_ABORT_MS)
    return report


async def sweep_once(
    tasks: TaskStore,
    redis: ArqRedis,
    config: ProcessingConfig,
    uploads: UploadRemover | None = None,
    usage: StorageLedger | None = None,
) -> SweepReport | None:
    """One :func:`sweep` under the housekeeping lock; None when another process (a worker
    or an API node) holds it."""
    token = secrets.token_hex(16)
    if not await redis.set(LOCK_KEY, token, nx=True, px=LOCK_TTL_MS):
        return None
    try:
        report = await sweep(tasks, redis, config, uploads=uploads, usage=usage)
    finally:
        await redis.eval(_RELEASE, 1, LOCK_KEY, token)  # type: ignore[misc]
    if report.deleted or report.requeued or report.failed_lost or report.temp_files:
        logger.info("housekeeping: %s", report)
    return report


async def housekeeping(ctx: dict[str, Any]) -> str:
    """The ARQ cron job; a no-op when another process holds the lock."""
    state: WorkerState = ctx["state"]
    report = await sweep_once(state.tasks, ctx["redis"], state.config, state.uploads, state.usage)
    return "skipped: another process is sweeping" if report is None else str(report)

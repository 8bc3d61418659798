"""The ARQ worker process (``tusd-py worker``).

Settings that matter, and why:

- ``max_jobs = config.max_jobs``: at most that many tries run at once in one process.
- ``allow_abort_jobs``: the API's cancel aborts the job; the worker looks for aborts on
  every poll (``poll_delay``, 0.05 s by default), so a running child is killed within about that.
- ``job_completion_wait = shutdown_grace``: on SIGTERM, running tries get that long to
  finish; then they are cancelled, their children killed, their tasks requeued.
- The job's ARQ timeout is ``job_timeout + ARQ_TIMEOUT_MARGIN``: ours fires first and
  kills the child; ARQ's would only fail the job for good.
- The job's ARQ ``max_tries`` is above any task's ``max_attempts`` plus the allowance
  for interrupted starts, so the job itself always records the final state (see
  :mod:`processing.jobs`).
- Tries run in a warm pool of ``max_jobs`` children (:mod:`processing.pool`), started
  at start-up and killed at shutdown (or by their own PDEATHSIG if the worker dies).
- ARQ holds a started job for the largest function timeout + 10 s; :mod:`processing.lease`
  shortens that to ``lease_ttl`` while a try runs, which bounds crash recovery.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker, func

from processing.config import ProcessingConfig
from processing.events import event_log_for
from processing.housekeeping import housekeeping
from processing.jobs import MAX_INTERRUPTIONS, WorkerState, process_task
from processing.pool import ChildPool
from processing.records import MAX_ATTEMPTS_LIMIT
from processing.submit import JOB_NAME
from processing.tasks import TaskStore
from processing.uploads import UploadRemover
from processing.usage import StorageLedger

__all__ = ["run_worker", "worker_settings"]

logger = logging.getLogger("processing.worker")

ARQ_TIMEOUT_MARGIN = 60.0
"""Seconds ARQ's job timeout exceeds ours: time to kill the child and write the outcome."""
HOUSEKEEPING_TIMEOUT = 50.0
KEEP_ARQ_RESULT = 600
"""ARQ's own job results are not used by anyone; keep them briefly."""


def worker_settings(config: ProcessingConfig, uploads: UploadRemover | None = None) -> dict[str, Any]:
    """Keyword arguments for ``arq.worker.Worker``. ``uploads`` removes an upload once
    its task's retention ends (the app passes its tus store)."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        config.results_dir.mkdir(parents=True, exist_ok=True)
        events = event_log_for(config, ctx["redis"])
        pool = ChildPool(
            config.max_jobs,
            max_tries_per_child=config.max_tries_per_child,
            max_memory_per_child=config.max_memory_per_child * 1024 * 1024,
        )
        await pool.start()
        ctx["state"] = WorkerState(
            config,
            TaskStore(ctx["redis"], events),
            events,
            uploads,
            pool,
            usage=StorageLedger(ctx["redis"], limit=config.storage_quota),
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        state: WorkerState | None = ctx.get("state")
        if state is not None and state.pool is not None:
            await state.pool.close()

    return {
        "functions": [
            func(
                process_task,
                name=JOB_NAME,
                timeout=config.job_timeout + ARQ_TIMEOUT_MARGIN,
                max_tries=max(config.max_tries, MAX_ATTEMPTS_LIMIT) + MAX_INTERRUPTIONS + 1,
                keep_result=KEEP_ARQ_RESULT,
            )
        ],
        "cron_jobs": [
            cron(
                housekeeping,
                name="housekeeping",
                second=0,
                timeout=HOUSEKEEPING_TIMEOUT,
                unique=True,
            )
        ],
        "redis_settings": RedisSettings.from_dsn(config.redis_url),
        "queue_name": config.queue_name,
        "max_jobs": config.max_jobs,
        "job_completion_wait": config.shutdown_grace,
        "allow_abort_jobs": True,
        "retry_jobs": True,
        "poll_delay": config.poll_delay,
        "keep_result": KEEP_ARQ_RESULT,
        "health_check_interval": 60,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
    }


class EagerWorker(Worker):
    """An ARQ worker that looks at the queue as soon as a job frees a slot.

    ARQ polls every ``poll_delay``; a slot freed just after a poll stays idle until the
    next one, which for millisecond tasks costs more than the work. This subclass runs
    one extra poll iteration right after a job's slot is released (ARQ's own done
    callback, ``_release_sem_dec_counter_on_complete``; ARQ is pinned to 0.28.x). Poll
    iterations never overlap: a lock serializes the extra ones with the regular loop.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._poll_lock: asyncio.Lock | None = None
        self._eager: set[asyncio.Task[None]] = set()
        self._eager_pending = False

    async def _poll_iteration(self) -> None:
        if self._poll_lock is None:
            self._poll_lock = asyncio.Lock()
        async with self._poll_lock:
            await super()._poll_iteration()

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        if self._eager_pending or self.main_task is None or self.main_task.done():
            return  # one extra look is enough for any number of freed slots; or stopping
        self._eager_pending = True
        task = asyncio.get_running_loop().create_task(self._eager_poll())
        self._eager.add(task)
        task.add_done_callback(self._eager.discard)

    async def _eager_poll(self) -> None:
        self._eager_pending = False
        try:
            await self._poll_iteration()
        except Exception:  # the regular loop polls again and reports what is wrong
            logger.exception("eager poll failed")


def run_worker(config: ProcessingConfig, uploads: UploadRemover | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT (blocking). Logging is the caller's to set up."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    EagerWorker(**worker_settings(config, uploads)).run()

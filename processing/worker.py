"""The ARQ worker process (``tusd-py worker``).

Settings that matter, and why:

- ARQ's ``max_jobs = config.max_jobs + PREFETCHED_JOBS``, and at most ``config.max_jobs``
  tries run at once in one process (:mod:`processing.slots`): a job claimed beyond them
  waits for a try slot with its bookkeeping done.
- ``allow_abort_jobs``: the API's cancel aborts the job; the worker looks for aborts on
  every poll (``poll_delay``, 0.05 s by default), so a running child is killed within about that.
- ``job_completion_wait = shutdown_grace``: on SIGTERM, running tries get that long to
  finish; then they are cancelled, their children killed, their tasks requeued.
- The job's ARQ timeout is ``2 * job_timeout + ARQ_TIMEOUT_MARGIN`` (a claimed job may
  wait one try for its slot): ours fires first and kills the child; ARQ's would only
  fail the job for good.
- The job's ARQ ``max_tries`` is above any task's ``max_attempts`` plus the allowance
  for interrupted starts, so the job itself always records the final state (see
  :mod:`processing.jobs`).
- Tries run in a warm pool of ``max_jobs`` children (:mod:`processing.pool`), started
  at start-up and killed at shutdown (or by their own PDEATHSIG if the worker dies).
- ARQ would hold a started job for the largest function timeout + 10 s; our claim takes
  it for ``lease_ttl`` and :mod:`processing.lease` re-arms that while the job waits and
  while its try runs, which bounds crash recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from arq import cron
from arq.connections import RedisSettings, create_pool
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker, func
from redis.commands.core import AsyncScript

from processing.config import ProcessingConfig
from processing.events import event_log_for
from processing.housekeeping import housekeeping
from processing.jobs import MAX_INTERRUPTIONS, WorkerState, process_task
from processing.outage import OUTAGE_ERRORS, Outage
from processing.pool import ChildPool
from processing.records import MAX_ATTEMPTS_LIMIT
from processing.slots import PREFETCHED_JOBS, TrySlots
from processing.submit import JOB_NAME
from processing.tasks import TaskStore
from processing.uploads import UploadRemover
from processing.usage import StorageLedger
from processing.wake import listen

__all__ = ["EagerWorker", "run_worker", "worker_settings"]

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
            slots=TrySlots(config.max_jobs),
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
                timeout=2 * config.job_timeout + ARQ_TIMEOUT_MARGIN,
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
        "max_jobs": config.max_jobs + PREFETCHED_JOBS,
        "job_completion_wait": config.shutdown_grace,
        "allow_abort_jobs": True,
        "retry_jobs": True,
        "poll_delay": config.poll_delay,
        "keep_result": KEEP_ARQ_RESULT,
        "health_check_interval": 60,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
    }


# The claim of jobs for free slots, the queue read included, in one script (ARQ's
# ``start_jobs`` spends WATCH, EXISTS, ZSCORE and MULTI/EXEC per job): the first ARGV[3] due
# jobs (score <= ARGV[1]) among the first ARGV[5] entries from offset ARGV[6] that run
# nowhere (no in-progress key: this worker's own running jobs have one, so they are passed
# over), each claimed for ARGV[2] ms. ARGV[4] is ARQ's in-progress key prefix: keys derived
# from the queue's members, not passed in KEYS, which a single Redis (the only deployment
# ARQ supports) allows. KEYS: queue. Returns {job id, score, job id, score, ...}.
_CLAIM = """
local claimed = {}
local wanted = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', ARGV[6], ARGV[5])
for i = 1, #due, 2 do
  local key = ARGV[4] .. due[i]
  if redis.call('EXISTS', key) == 0 then
    redis.call('PSETEX', key, ARGV[2], '1')
    claimed[#claimed + 1] = due[i]
    claimed[#claimed + 1] = math.floor(tonumber(due[i + 1]))
    if #claimed >= 2 * wanted then break end
  end
end
return claimed
"""


class EagerWorker(Worker):
    """An ARQ worker that looks at the queue as soon as a job frees a slot, and that rides
    out a Redis outage of any length.

    Eager polling: ARQ polls every ``poll_delay``; a slot freed just after a poll stays
    idle until the next one, which for millisecond tasks costs more than the work. This
    subclass reads the queue and starts jobs right after a job's slot is released (ARQ's
    own done callback, ``_release_sem_dec_counter_on_complete``; ARQ is pinned to 0.28.x).
    Queue reads never overlap: a lock serializes the extra ones with the regular loop.
    Both the eager look and ARQ's regular poll claim through one script
    (:meth:`_claim_free_slots`): one round trip for all free slots instead of ARQ's four
    per job, passing over the jobs that run anywhere, this worker's own among them (they
    stay at the head of the queue until they finish).

    Outages: ARQ 0.28 lets a ``ConnectionError`` out of its poll loop (``_poll_iteration``:
    the queue read, ``start_jobs``, ``_cancel_aborted_jobs``, the heartbeat and the cron
    enqueue), out of ``run_job``'s start and finish pipelines, out of start-up
    (``create_pool`` gives up after 5 s) and out of ``close``; each ends the process. Here:

    - start-up waits for Redis as long as it takes;
    - a poll iteration that fails is skipped, and the loop waits (backoff up to
      :data:`~processing.outage.MAX_DELAY`) and then probes Redis; one log line when Redis
      goes, one when it is back;
    - a slot ARQ took for a job whose start failed is given back (ARQ would leak it);
    - a job whose start pipeline failed never ran: its ``arq:in-progress`` key (which ARQ
      sets for the largest timeout + 10 s) is dropped once Redis is back, so it runs then;
    - a job that ran keeps its slot until ARQ's finish (result, retry score, in-progress
      key) is written, which waits for Redis; on Redis's return the first thing the poll
      loop does is re-arm the in-progress keys of this worker's running jobs (they may have
      expired during the outage), so that no poll of ours starts one of them a second time;
    - on SIGTERM during an outage the worker still stops: waits give up, children are killed.
    """

    def __init__(self, *, lease_ttl: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._poll_lock = asyncio.Lock()  # serializes the eager queue reads with the loop's
        self._eager: set[asyncio.Task[None]] = set()
        self._eager_pending = False
        self._lease_ms = int(lease_ttl * 1000)
        self.outage = Outage("worker", logger)
        self._redis_up = asyncio.Event()
        self._redis_up.set()
        self._unstarted: set[str] = set()
        """Jobs whose ``run_job`` lost Redis before the function ran."""
        self._closing = False
        self._claim_script: AsyncScript | None = None
        self._doorbell: asyncio.Task[None] | None = None
        """Listens for :mod:`processing.wake`'s rings: a job was enqueued."""

    # -- start-up --------------------------------------------------------------------

    async def main(self) -> None:
        while True:
            try:
                if self._pool is None:
                    self._pool = await create_pool(
                        dataclasses.replace(self.redis_settings, conn_retries=0),
                        job_deserializer=self.job_deserializer,
                        job_serializer=self.job_serializer,
                        default_queue_name=self.queue_name,
                        expires_extra_ms=self.expires_extra_ms,
                    )
                    self.outage.answered()
                if self._doorbell is None:
                    self._doorbell = asyncio.get_running_loop().create_task(
                        listen(self.pool, self.queue_name, self._look_now)
                    )
                # Raises only before its poll loop (ARQ's Redis INFO at start-up): the
                # loop's own errors are caught in _poll_iteration, and on_startup does no I/O.
                await super().main()
                return
            except OUTAGE_ERRORS as exc:
                await asyncio.sleep(self.outage.failed(exc))

    # -- the poll loop ---------------------------------------------------------------

    async def _poll_iteration(self) -> None:
        async with self._poll_lock:
            try:
                if not self._redis_up.is_set() or self.outage.down:
                    await self._recover()
                await super()._poll_iteration()
            except OUTAGE_ERRORS as exc:
                self._redis_up.clear()
                await asyncio.sleep(self.outage.failed(exc))

    def _mark_down(self, exc: BaseException) -> None:
        if not self.outage.down:
            self.outage.failed(exc)
        self._redis_up.clear()

    async def _recover(self) -> None:
        """First contact after an outage: re-arm our running jobs' in-progress keys, free
        the jobs that never started; then let waiting finishes write."""
        running = [job_id for job_id, task in self.tasks.items() if not task.done()]
        unstarted = set(self._unstarted)
        async with self.pool.pipeline(transaction=False) as pipe:
            pipe.ping()
            for job_id in running:
                if job_id not in unstarted:
                    pipe.set(in_progress_key_prefix + job_id, b"1", px=self._lease_ms)
            for job_id in unstarted:
                pipe.delete(in_progress_key_prefix + job_id)
            await pipe.execute()
        self._unstarted -= unstarted
        self.outage.answered()
        self._redis_up.set()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """ARQ's poll read ``job_ids``: if any is due, claim what the free slots can take
        (:meth:`_claim_free_slots` reads the queue again, in the script that claims)."""
        if job_ids:
            await self._claim_free_slots()

    async def _claim_free_slots(self) -> None:
        """Claim as many due jobs as there are free slots, in one script (:data:`_CLAIM`),
        and start them. The slots are taken first (none of these acquires waits: ``sem``
        counts the same slots as ``job_counter``, and only the poll lock's holder takes
        them); those no job came for are given back. Raises what Redis raises, nothing
        started."""
        free = self.max_jobs - self.job_counter
        if free <= 0:
            return
        for _ in range(free):
            await self.sem.acquire()
        self.job_counter += free
        try:
            claimed = await self._claim_next(free)
        except BaseException:
            self._give_back_slots(free)
            raise
        started = 0
        for i in range(0, len(claimed), 2):
            job_id = claimed[i].decode()
            running = self.tasks.get(job_id)
            if running is None or running.done():  # else ours, its key re-armed: harmless
                self._launch(job_id, int(claimed[i + 1]))
                started += 1
        self._give_back_slots(free - started)

    def _give_back_slots(self, count: int) -> None:
        for _ in range(count):
            self.job_counter -= 1
            self.sem.release()

    async def _claim_next(self, wanted: int) -> list[Any]:
        if self._claim_script is None:
            self._claim_script = self.pool.register_script(_CLAIM)
        args = [
            timestamp_ms(),
            self._lease_ms,  # the job's lease re-arms it
            wanted,
            in_progress_key_prefix,
            self.queue_read_limit,
            self._queue_read_offset,
        ]
        return list(await self._claim_script(keys=[self.queue_name], args=args, client=self.pool))

    def _launch(self, job_id: str, score: int) -> None:
        """Run a claimed job in the slot already taken for it (``sem`` and ``job_counter``)."""
        task = self.loop.create_task(self.run_job(job_id, score))
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task

    def handle_sig_wait_for_completion(self, signum: Any) -> None:
        """SIGTERM: besides ARQ's stop (no new jobs, running ones get ``job_completion_wait``),
        jobs claimed ahead of a try slot leave without beginning (:mod:`processing.slots`)."""
        state = self.ctx.get("state")
        if state is not None and state.slots is not None:
            state.slots.stop()
        super().handle_sig_wait_for_completion(signum)

    # -- one job ---------------------------------------------------------------------

    async def run_job(self, job_id: str, score: int) -> None:
        try:
            await super().run_job(job_id, score)
        except OUTAGE_ERRORS as exc:
            # Only ARQ's start pipeline gets here (finishes wait below): nothing ran.
            self._mark_down(exc)
            self._unstarted.add(job_id)
            logger.warning("job %s not started: Redis unavailable; it runs once Redis is back", job_id)

    async def finish_job(self, job_id: str, *args: Any) -> None:
        await self._until_written(job_id, lambda: super(EagerWorker, self).finish_job(job_id, *args))

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        await self._until_written(
            job_id, lambda: super(EagerWorker, self).finish_failed_job(job_id, result_data)
        )

    async def _until_written(self, job_id: str, write: Callable[[], Awaitable[None]]) -> None:
        """Write a finished job's outcome to ARQ once Redis answers (the poll loop probes
        it); give up only when the worker is stopping (the job then runs again)."""
        while True:
            try:
                await write()
                return
            except OUTAGE_ERRORS as exc:
                self._mark_down(exc)
            while not self._redis_up.is_set():
                if self._closing or self.main_task is None or self.main_task.done():
                    logger.warning(
                        "job %s: stopping before Redis is back; its outcome in ARQ is lost", job_id
                    )
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._redis_up.wait(), 0.5)

    # -- eager polling ---------------------------------------------------------------

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._look_now()

    def _look_now(self) -> None:
        """Read the queue soon (a slot was freed, or the doorbell rang), once however many
        reasons arrive before the look runs."""
        if self._eager_pending or self.main_task is None or self.main_task.done():
            return  # one extra look is enough for any number of freed slots; or stopping
        if self.job_counter >= self.max_jobs or not self.allow_pick_jobs:
            return  # no room: the next freed slot looks
        self._eager_pending = True
        task = asyncio.get_running_loop().create_task(self._eager_poll())
        self._eager.add(task)
        task.add_done_callback(self._eager.discard)

    async def _eager_poll(self) -> None:
        self._eager_pending = False
        try:
            await self._start_waiting_jobs()
        except Exception:  # the regular loop polls again and reports what is wrong
            logger.exception("eager poll failed")

    async def _start_waiting_jobs(self) -> None:
        """What a freed slot needs of ARQ's poll iteration: read the queue and start jobs.
        The abort check, the clean-up of finished tasks and the heartbeat stay with the
        regular loop (every ``poll_delay``), as does recovering from an outage."""
        async with self._poll_lock:
            if (
                not self.allow_pick_jobs  # stopping (SIGTERM): no new job
                or not self._redis_up.is_set()
                or self.outage.down
                or self.job_counter >= self.max_jobs
            ):
                return
            try:
                await self._claim_free_slots()
            except OUTAGE_ERRORS as exc:
                self._mark_down(exc)

    # -- shutdown --------------------------------------------------------------------

    async def close(self) -> None:
        self._closing = True
        if self._doorbell is not None:
            self._doorbell.cancel()
        try:
            await super().close()
        except OUTAGE_ERRORS as exc:
            # ARQ's close deletes its health key first; without Redis, still stop the
            # children (on_shutdown) and drop the connections.
            logger.warning("stopping without Redis (%s: %s)", type(exc).__name__, exc)
            if self.on_shutdown is not None:
                await self.on_shutdown(self.ctx)
            if self._pool is not None:
                with contextlib.suppress(*OUTAGE_ERRORS):
                    await self._pool.close(close_connection_pool=True)
                self._pool = None


def run_worker(config: ProcessingConfig, uploads: UploadRemover | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT (blocking), through any Redis outage. Logging
    is the caller's to set up."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    EagerWorker(lease_ttl=config.lease_ttl, **worker_settings(config, uploads)).run()

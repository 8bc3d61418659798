"""The worker's ARQ job: one try of one task, from a queued task to a result.

The API's half (``submit_task``, ``cancel_task``) is :mod:`processing.submit`. Each ARQ try of the job is one try
of the task, run in a child process (:mod:`processing.runner`) under our own timeout; ARQ's own timeout is set
well above it and is never what ends a try.

How a try ends:

- the child exits 0: it has renamed its fsynced result into place; the task completes;
- timeout or child failure: the task is ``retrying`` and ``arq.Retry`` re-runs it after
  1 s, 2 s, 4 s ... (capped); after ``max_attempts`` tries it is ``failed`` with the
  last error;
- cancelled by the API (ARQ abort, or the lease noticing): the child is killed, the
  task stays ``cancelled``;
- cancelled by a stopping worker (SIGTERM after ``shutdown_grace``): the child is
  killed, the task goes back to ``queued`` and the try is given back (ARQ's try
  counter is decremented), so a deploy does not burn tries;
- claimed ahead of a free try slot (:mod:`processing.slots`): the job waits, its claim
  kept alive by a lease, with the task still ``queued``; a stopping worker's waiting
  job leaves without beginning and goes back to the queue as the same try;
- the worker dies (kill -9): the child dies with it (PDEATHSIG); ARQ reruns the job
  once the lease expires, as the next try, noting the interruption as the error;
- Redis goes away while the child runs: the try runs on; once it ended (its result
  renamed into place, or its failure known) the outcome is written when Redis answers
  again (:func:`_recorded`), so the work is not redone. Only a stopping worker's
  cancellation ends that wait.

Our budget decides, not ARQ's start counter (``arq:retry:<id>``, which also counts
starts cut short by a dying worker): ``max_attempts`` bounds *failed* tries, and
``MAX_INTERRUPTIONS`` bounds starts that a worker's death cut short. ARQ's own
``max_tries`` is set above both, so the job itself always records the final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from arq import Retry
from arq.constants import in_progress_key_prefix, retry_key_prefix
from redis.exceptions import RedisError

from processing.config import ProcessingConfig
from processing.events import EventLog
from processing.lease import Lease
from processing.operations import get_operation
from processing.outage import OUTAGE_ERRORS, Outage
from processing.pool import ChildPool
from processing.records import Task, TaskStatus, is_task_id
from processing.runner import TryFailed, run_operation
from processing.slots import TrySlots
from processing.submit import JOB_NAME
from processing.tasks import INTERRUPTED_FORMAT, TaskStore
from processing.uploads import UploadRemover
from processing.usage import StorageLedger, result_entry

__all__ = [
    "JOB_NAME",
    "MAX_INTERRUPTIONS",
    "PROGRESS_INTERVAL",
    "UploadRemover",
    "WorkerState",
    "process_task",
]

logger = logging.getLogger("processing.jobs")

MAX_INTERRUPTIONS = 20
"""Starts of one task cut short by its worker's death (kill -9, OOM, a lost host) that
charge no try. Past this many the task fails: an operation that kills its own worker
would otherwise run forever. ARQ's ``max_tries`` is set above every such bound."""

PROGRESS_INTERVAL = 0.3
"""Seconds between two progress writes (and task.progress events) of one task."""

T = TypeVar("T")


async def _recorded(task_id: str, what: str, write: Callable[[], Awaitable[T]]) -> T:
    """``write()`` until Redis takes it: the try's work is done, so an outage delays its
    record instead of turning it into a retry that redoes the work. One log line when
    Redis is away, one when the write went through. Each write is a guarded transition
    (:mod:`processing.tasks`), so one whose reply was lost is refused the second time,
    never applied twice."""
    outage: Outage | None = None
    while True:
        try:
            result = await write()
        except OUTAGE_ERRORS as exc:
            outage = outage or Outage(f"task {task_id}: recording {what}", logger)
            await asyncio.sleep(outage.failed(exc))
            continue
        if outage is not None:
            outage.answered()
        return result


@dataclass(frozen=True)
class WorkerState:
    """What the job needs, built once per worker process (``ctx["state"]``)."""

    config: ProcessingConfig
    tasks: TaskStore
    events: EventLog
    uploads: UploadRemover | None = None
    """None only in processing-only test benches: retention then keeps uploads."""
    pool: ChildPool | None = None
    """The worker's warm children; None runs each try in a fresh one-shot child."""
    usage: StorageLedger | None = None
    """The per-user storage ledger a result is charged to; None charges nothing."""
    slots: TrySlots | None = None
    """The worker's try slots (jobs are claimed ahead of them); None: ARQ's slots alone."""


def source_of(task: Task) -> Path | None:
    """The upload's bytes: the path the finish hook recorded on the task (None on a
    record without one, which then fails as "the uploaded file is missing")."""
    return Path(task.source) if task.source else None


def _gave_up(task: Task, job_try: int) -> str:
    """Why a task whose budget is spent fails (``begin_try`` refused to start it)."""
    error = task.error
    if task.status is TaskStatus.PROCESSING and task.attempts < job_try:
        error = INTERRUPTED_FORMAT % task.attempts
    interruptions = job_try - 1 - task.failures
    reason = (
        f"{task.failures} tries failed"
        if task.failures >= task.max_attempts
        else f"its worker died {interruptions} times"
    )
    return f"gave up: {reason}; last error: {error or 'unknown'}"


class _ProgressWriter:
    """Store progress on the task (and publish task.progress), at most every 0.3 s."""

    def __init__(self, tasks: TaskStore, task: Task, attempt: int) -> None:
        self.tasks = tasks
        self.task = task
        self.attempt = attempt
        self.last = time.monotonic()
        self.failing = False
        """True while writes fail (a Redis outage): one log line per change, not per write."""

    async def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            try:
                await self.tasks.report_progress(self.task, self.attempt, done)
            except RedisError as exc:  # progress is best effort; the try goes on
                if not self.failing:
                    logger.warning("progress of %s not stored (%s); the try goes on", self.task.id, exc)
                self.failing = True
            else:
                if self.failing:
                    logger.warning("progress of %s stored again", self.task.id)
                self.failing = False


async def process_task(ctx: dict[str, Any], task_id: str) -> str:
    """The ARQ job: one try of one task. Returns a word for ARQ's log.

    A Redis or file-system error in our own bookkeeping becomes ``Retry``: never an
    ARQ failure, which would leave the task unfinished.
    """
    state: WorkerState = ctx["state"]
    job_try: int = ctx["job_try"]
    if not is_task_id(task_id):
        return "gone"
    try:
        return await _process(ctx, state, task_id, job_try)
    except RedisError as exc:  # Redis went away before the try ran: one line, no traceback
        delay = state.config.retry_delay(job_try)
        logger.warning(
            "try %d of %s not started (%s: %s); again in %.1f s",
            job_try,
            task_id,
            type(exc).__name__,
            exc,
            delay,
        )
        raise Retry(defer=delay) from exc
    except OSError as exc:
        logger.exception("try %d of %s could not be recorded", job_try, task_id)
        raise Retry(defer=state.config.retry_delay(job_try)) from exc


async def _process(ctx: dict[str, Any], state: WorkerState, task_id: str, job_try: int) -> str:
    slots = state.slots
    if slots is None:
        return await _begin_try(ctx, state, task_id, job_try)
    given_back = await _wait_for_slot(ctx, state, slots, task_id)
    try:
        if slots.stopping:  # claimed before the worker was told to stop: not begun, give back
            if not given_back:
                await _give_back(ctx)
            raise Retry(defer=0)
        recount = retry_key_prefix + ctx["job_id"] if given_back else None
        return await _begin_try(ctx, state, task_id, job_try, recount)
    finally:
        slots.release()


async def _wait_for_slot(ctx: dict[str, Any], state: WorkerState, slots: TrySlots, task_id: str) -> bool:
    """Take a try slot (:mod:`processing.slots`); whether the job gave its start back.

    A job that must wait gives its start back to ARQ's counter first (``begin_try``
    counts it again), so that a worker dying meanwhile costs it no try, and keeps its
    claim alive with a lease. Cancelled while waiting (an abort, a stopping worker), it
    leaves with nothing begun."""
    if await slots.take_free():
        return False
    given_back = await _give_back(ctx)
    lease = Lease(ctx["redis"], ctx["job_id"], task_id, state.config.lease_ttl, _no_op, armed=True)
    async with lease:
        await slots.acquire()
    return given_back


def _no_op() -> None:
    """A waiting job's lease ignores a cancel: ARQ's abort ends the wait, and ``begin_try``
    refuses to begin a cancelled task anyway."""


async def _give_back(ctx: dict[str, Any]) -> bool:
    """ARQ counted this start as a try; the next start should be this try again."""
    try:
        await ctx["redis"].decr(retry_key_prefix + ctx["job_id"])
    except RedisError as exc:  # then a death while waiting costs the job one start
        logger.warning("could not give back the start of %s: %s", ctx["job_id"], exc)
        return False
    return True


async def _begin_try(
    ctx: dict[str, Any],
    state: WorkerState,
    task_id: str,
    job_try: int,
    recount: str | None = None,
) -> str:
    config, tasks = state.config, state.tasks
    # One round trip (TaskStore.begin_try): shorten ARQ's in-progress lock to the lease's
    # TTL, read the task, check our budget and start the try. Our budget decides, not
    # ARQ's start counter: failed tries against max_attempts, and starts cut short by a
    # dying worker against MAX_INTERRUPTIONS.
    begun = await tasks.begin_try(
        task_id,
        job_try,
        job_lock=in_progress_key_prefix + ctx["job_id"],
        lock_ms=int(config.lease_ttl * 1000),
        max_interruptions=MAX_INTERRUPTIONS,
        recount=recount,
    )
    task = begun.task
    if task is None:
        return "gone"
    if begun.exhausted:
        await tasks.fail(task, _gave_up(task, job_try))
        return "failed"
    if not begun.started:
        return f"already {task.status.value}"
    started = task
    try:
        get_operation(started.operation, config.enable_fault_operations)
    except KeyError:
        await tasks.fail(started, f"operation '{started.operation}' is not available", job_try)
        return "failed"
    source = source_of(started)
    if source is None or not source.is_file():
        await tasks.fail(started, "the uploaded file is missing", job_try)
        return "failed"
    return await _run_try(ctx, state, started, job_try, source)


async def _run_try(ctx: dict[str, Any], state: WorkerState, task: Task, job_try: int, source: Path) -> str:
    config, tasks = state.config, state.tasks
    target = config.result_path(task.id)
    temporary = target.with_name(f"{task.id}.{job_try}.{secrets.token_hex(4)}.tmp")
    placed = False
    runner = state.pool.run if state.pool is not None else run_operation
    run = asyncio.create_task(
        runner(
            task.operation,
            source,
            temporary,
            time_limit=config.job_timeout,
            attempt=job_try,
            on_progress=_ProgressWriter(tasks, task, job_try),
            place_at=target,  # the child renames its fsynced result into place
        )
    )
    try:
        lease = Lease(ctx["redis"], ctx["job_id"], task.id, config.lease_ttl, run.cancel, armed=True)
        async with lease:
            try:
                size = await run
                placed = True
                # Charged once the result is in place (no API serves it before the task
                # completes): through a Redis outage the charge waits, the work stays done.
                if not await _recorded(task.id, "its result size", lambda: _charge_result(state, task, size)):
                    await asyncio.to_thread(target.unlink, missing_ok=True)
                    limit = state.usage.limit if state.usage is not None else 0
                    message = (
                        f"the result would pass your storage quota (TUSD_PY_STORAGE_QUOTA, {limit} bytes)"
                    )
                    await _recorded(task.id, "its failure", lambda: tasks.fail(task, message, job_try))
                    return "failed"
            except asyncio.CancelledError:
                this = asyncio.current_task()
                if this is not None and this.cancelling():
                    await _cancelled_from_outside(ctx, state, task, job_try)
                    raise
                return "cancelled"  # the lease saw the task cancelled; the child is gone
            except TryFailed as exc:
                return await _failed_try(config, tasks, task, job_try, str(exc))
            except Exception as exc:  # our own bookkeeping broke: count it as a failed try
                logger.exception("try %d of %s broke", job_try, task.id)
                return await _failed_try(
                    config, tasks, task, job_try, f"internal error ({type(exc).__name__})"
                )
    finally:
        if not run.done():  # only if something above failed before awaiting it
            run.cancel()
        if not placed:  # a try cut short may leave its temporary behind
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
    if await _recorded(task.id, "its completion", lambda: tasks.complete(task, job_try)) is not None:
        return "completed"
    latest = await _recorded(task.id, "its completion", lambda: tasks.get(task.id))
    if latest is None or latest.status is TaskStatus.CANCELLED:
        target.unlink(missing_ok=True)  # cancelled at the last moment: no orphan result
        if state.usage is not None:
            await state.usage.release(task.owner, result_entry(task.id))
    return "superseded"


async def _charge_result(state: WorkerState, task: Task, size: int) -> bool:
    """Charge the written result's real size to its owner (it replaces the room held
    back at upload); False if it would pass the storage quota."""
    if state.usage is None:
        return True
    return await state.usage.charge_result(task.owner, task.id, size)


async def _failed_try(
    config: ProcessingConfig, tasks: TaskStore, task: Task, job_try: int, error: str
) -> str:
    """Retry later with backoff, or fail the task after its last try."""
    failures = task.failures + 1
    message = f"try {failures} of {task.max_attempts}: {error}"
    if failures >= task.max_attempts:
        await _recorded(task.id, "its failure", lambda: tasks.fail(task, message, job_try))
        return "failed"
    retrying = await _recorded(
        task.id, "a failed try", lambda: tasks.retry_later(task, job_try, message, failures)
    )
    if retrying is None:
        return "superseded"  # cancelled, or another try took over
    raise Retry(defer=config.retry_delay(failures))


async def _cancelled_from_outside(ctx: dict[str, Any], state: WorkerState, task: Task, job_try: int) -> None:
    """The job itself was cancelled: an abort (the task is already ``cancelled``, nothing
    to do) or a stopping worker, which gives the try back to the queue."""
    try:
        latest = await state.tasks.get(task.id)
        if latest is None or latest.status is TaskStatus.CANCELLED:
            return
        if await state.tasks.requeue(task, job_try) is not None:
            # ARQ counts this start as a try; the next start should be this try again.
            await ctx["redis"].decr(retry_key_prefix + ctx["job_id"])
    except RedisError as exc:  # the task will be picked up as an interrupted try
        logger.warning("could not requeue %s: %s", task.id, exc)

"""The API's side of processing: turn a finished upload into a task, and cancel one.

Kept apart from the worker's job (:mod:`processing.jobs`) so that the API imports
neither the child runner, nor the lease, nor ``arq.Retry``: only the task store, the
event log and ARQ's queue.

One task = one ARQ job whose ``_job_id`` is the task id, so a repeated finish hook
never enqueues twice.
"""

from __future__ import annotations

import os

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss
from arq.utils import timestamp_ms

from processing.events import EventLog
from processing.operations import REGISTRY
from processing.records import MAX_ATTEMPTS_LIMIT, Task, TaskStatus, clean_filename, is_task_id
from processing.tasks import TaskStore
from processing.wake import ring

JOB_NAME = "process_task"
"""The ARQ function name of a task's job (the worker registers it under this name)."""


async def submit_task(
    tasks: TaskStore,
    events: EventLog,
    arq: ArqRedis,
    *,
    task_id: str,
    owner: str,
    filename: str,
    size: int,
    operation: str,
    max_attempts: int,
    source: str | os.PathLike[str] = "",
) -> Task:
    """Record a ``queued`` task for a finished upload and enqueue its job; idempotent.

    The task id is the upload id (``[A-Za-z0-9_-]{1,128}``); ``source`` is where the
    store keeps the upload's bytes (the worker reads that path and knows no disk layout).
    A repeated call returns the existing task and publishes
    nothing (``task.queued`` is published once, by the creating call). The job is
    enqueued with ``_job_id=task_id``, so it is never enqueued twice; a repeat of a
    call that died between the two steps enqueues it then. ``events`` must be the
    EventLog the TaskStore publishes to. Raises ``ValueError`` on a bad id, operation
    or ``max_attempts``, or when the id belongs to another owner's task.
    """
    if not is_task_id(task_id):
        raise ValueError("task id must match [A-Za-z0-9_-]{1,128}")
    if operation not in REGISTRY:
        raise ValueError(f"unknown operation '{operation}'")
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ValueError(f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}")
    candidate = Task(
        id=task_id,
        owner=owner,
        filename=clean_filename(filename),
        size=max(0, int(size)),
        operation=operation,
        max_attempts=max_attempts,
        source=os.fspath(source),
    )
    task, _created = await tasks.create(candidate)
    if task.owner != owner:
        raise ValueError("task id already belongs to another user")
    if task.status is TaskStatus.QUEUED:
        await arq.enqueue_job(JOB_NAME, task_id, _job_id=task_id)
        await ring(arq, arq.default_queue_name)  # an idle worker starts it now, not at its poll
    return task


async def cancel_task(tasks: TaskStore, arq: ArqRedis, task: Task) -> Task | None:
    """Cancel a queued, running or retrying task; None if it had already ended.

    The state change is the guarded transition (so a racing completion and this cancel
    end in exactly one final state). Then the ARQ job is aborted: a worker running it
    cancels it within one poll (``poll_delay``) and the try's child is killed at once;
    a job still waiting in the queue is dropped when a worker reaches it (a retry
    waiting out its backoff is moved to the front for that).
    """
    cancelled = await tasks.cancel(task)
    if cancelled is None:
        return None
    now = timestamp_ms()
    score = await arq.zscore(arq.default_queue_name, task.id)
    if score is not None and score > now:
        await arq.zadd(arq.default_queue_name, {task.id: now}, xx=True)
    await arq.zadd(abort_jobs_ss, {task.id: now})
    return cancelled

"""TaskStore.begin_try: the worker's one round trip that shortens ARQ's job lock, reads
the task, checks its budget and starts the try — against the suite's real Redis."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from processing.events import EventLog
from processing.jobs import MAX_INTERRUPTIONS, _gave_up
from processing.tasks import Task, TaskStatus, TaskStore


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
async def store(request, redis_url: str):
    client = aioredis.Redis.from_url(redis_url, decode_responses=request.param)
    yield TaskStore(client, EventLog(client, max_events=50, ttl_seconds=600))
    await client.aclose()


def new_task(max_attempts: int = 3) -> Task:
    owner = "user-" + uuid.uuid4().hex
    return Task(id=uuid.uuid4().hex, owner=owner, filename="a.txt", size=5, operation="uppercase",
                max_attempts=max_attempts)  # fmt: skip


async def begin(store: TaskStore, task_id: str, attempt: int, lock: str):
    return await store.begin_try(
        task_id, attempt, job_lock=lock, lock_ms=3000, max_interruptions=MAX_INTERRUPTIONS
    )


async def test_starts_the_try_shortens_the_lock_and_publishes(store: TaskStore):
    task, _ = await store.create(new_task())
    lock = "arq:in-progress:" + task.id
    await store.redis.set(lock, b"1", px=300_000)
    begun = await begin(store, task.id, 1, lock)
    assert (begun.started, begun.exhausted) == (True, False)
    assert begun.task is not None
    assert (begun.task.status, begun.task.attempts, begun.task.error) == (TaskStatus.PROCESSING, 1, None)
    assert begun.task.started_ms is not None
    assert begun.task == await store.get(task.id)
    assert 0 < await store.redis.pttl(lock) <= 3000
    events = await store.events.read(task.owner, "0-0")
    assert [(e.name.value, e.task.status) for e in events] == [
        ("task.queued", TaskStatus.QUEUED),
        ("task.progress", TaskStatus.PROCESSING),
    ]


async def test_a_try_its_worker_did_not_finish_is_noted(store: TaskStore):
    task, _ = await store.create(new_task())
    await begin(store, task.id, 1, "arq:in-progress:x")
    begun = await begin(store, task.id, 2, "arq:in-progress:x")  # try 1 never ended
    assert begun.started and begun.task is not None
    assert begun.task.attempts == 2
    assert begun.task.error == "try 1 interrupted: its worker stopped"


async def test_missing_and_finished_tasks_are_not_started(store: TaskStore):
    gone = await begin(store, uuid.uuid4().hex, 1, "arq:in-progress:y")
    assert (gone.task, gone.started, gone.exhausted) == (None, False, False)
    task, _ = await store.create(new_task())
    await store.cancel(task)
    begun = await begin(store, task.id, 1, "arq:in-progress:y")
    assert (begun.started, begun.exhausted) == (False, False)
    assert begun.task is not None and begun.task.status is TaskStatus.CANCELLED
    assert [e.name.value for e in await store.events.read(task.owner, "0-0")] == [
        "task.queued",
        "task.cancelled",
    ]


async def test_a_spent_budget_is_refused_unchanged(store: TaskStore):
    task, _ = await store.create(new_task(max_attempts=2))
    running = (await begin(store, task.id, 1, "arq:in-progress:z")).task
    assert running is not None
    await store.retry_later(running, 1, "try 1 of 2: boom", failures=2)  # both tries spent
    begun = await begin(store, task.id, 2, "arq:in-progress:z")
    assert (begun.started, begun.exhausted) == (False, True)
    assert begun.task == await store.get(task.id)
    assert begun.task is not None and begun.task.status is TaskStatus.RETRYING
    assert _gave_up(begun.task, 2) == "gave up: 2 tries failed; last error: try 1 of 2: boom"


async def test_too_many_interruptions_are_refused(store: TaskStore):
    task, _ = await store.create(new_task())
    await begin(store, task.id, 1, "arq:in-progress:w")
    limit = MAX_INTERRUPTIONS + 1  # starts 1..limit-1 all died with their worker
    assert (await begin(store, task.id, limit, "arq:in-progress:w")).started
    begun = await begin(store, task.id, limit + 1, "arq:in-progress:w")
    assert (begun.started, begun.exhausted) == (False, True)
    assert begun.task is not None
    assert _gave_up(begun.task, limit + 1) == (
        f"gave up: its worker died {MAX_INTERRUPTIONS + 1} times; "
        f"last error: try {limit} interrupted: its worker stopped"
    )

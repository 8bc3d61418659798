"""TaskStore and EventLog against the suite's real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from processing.events import EventLog
from processing.tasks import EventName, Task, TaskStatus, TaskStore


def new_task(owner: str, created_ms: int | None = None, size: int = 100) -> Task:
    task = Task(
        id=uuid.uuid4().hex,
        owner=owner,
        filename="notes.txt",
        size=size,
        operation="uppercase",
        max_attempts=4,
    )
    if created_ms is not None:
        task = Task(**{**task.__dict__, "created_ms": created_ms})
    return task


@pytest.fixture
def owner() -> str:
    return "user-" + uuid.uuid4().hex


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
async def store(request, redis_url: str):
    """A TaskStore on a client that decodes responses, and on one that does not."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=request.param)
    events = EventLog(client, max_events=50, ttl_seconds=600)
    yield TaskStore(client, events)
    await client.aclose()


async def event_names(store: TaskStore, owner: str) -> list[tuple[str, str]]:
    return [(e.task.id, e.name.value) for e in await store.events.read(owner, "0-0", count=1000)]


async def test_create_is_idempotent_and_publishes_once(store: TaskStore, owner: str):
    task = new_task(owner)
    first, created = await store.create(task)
    again, created_again = await store.create(Task(**{**task.__dict__, "filename": "other"}))
    assert (created, created_again) == (True, False)
    assert first == again == task
    assert again.filename == "notes.txt"
    assert await event_names(store, owner) == [(task.id, "task.queued")]
    assert (await store.get(task.id)) == task


async def test_lifecycle_is_guarded(store: TaskStore, owner: str):
    task, _ = await store.create(new_task(owner))
    running = await store.start_try(task, 1, None)
    assert running is not None and running.status is TaskStatus.PROCESSING
    assert running.attempts == 1 and running.started_ms is not None
    assert await store.report_progress(running, 2, 50) is None  # not the current try
    progressed = await store.report_progress(running, 1, 50)
    assert progressed is not None and progressed.progress == 0.5
    assert await store.complete(running, 2) is None
    done = await store.complete(running, 1)
    assert done is not None and done.status is TaskStatus.COMPLETED
    assert done.progress == 1.0 and done.to_public()["result_url"] == f"/tasks/{task.id}/result"
    assert await store.cancel(done) is None
    assert await store.fail(done, "late") is None
    assert await store.requeue(done, 1) is None
    assert (await store.get(task.id)).status is TaskStatus.COMPLETED
    assert [name for _, name in await event_names(store, owner)] == [
        "task.queued",
        "task.progress",
        "task.progress",
        "task.completed",
    ]


async def test_public_representation(store: TaskStore, owner: str):
    task, _ = await store.create(new_task(owner))
    public = task.to_public()
    assert set(public) == {
        "id", "filename", "size", "operation", "status", "progress", "attempts",
        "max_attempts", "error", "created_at", "started_at", "finished_at", "result_url",
    }  # fmt: skip
    assert public["status"] == "queued" and public["progress"] == 0.0
    assert public["created_at"].endswith("Z") and public["started_at"] is None
    assert public["result_url"] is None


async def test_cancel_racing_completion_ends_in_one_final_state(store: TaskStore, owner: str):
    tasks = []
    for _ in range(30):
        task, _ = await store.create(new_task(owner))
        tasks.append(await store.start_try(task, 1, None))
    outcomes = await asyncio.gather(*(store.complete(t, 1) for t in tasks), *(store.cancel(t) for t in tasks))
    completed, cancelled = outcomes[:30], outcomes[30:]
    names = await event_names(store, owner)
    for task, won_complete, won_cancel in zip(tasks, completed, cancelled, strict=True):
        assert (won_complete is None) != (won_cancel is None), "exactly one must win"
        final = await store.get(task.id)
        expected = TaskStatus.COMPLETED if won_complete else TaskStatus.CANCELLED
        assert final.status is expected
        finals = [n for i, n in names if i == task.id and n in ("task.completed", "task.cancelled")]
        assert finals == [EventName.COMPLETED if won_complete else EventName.CANCELLED]


async def test_listing_newest_first_with_cursor_and_filter(store: TaskStore, owner: str):
    created = []
    for i in range(25):
        task, _ = await store.create(new_task(owner, created_ms=1_700_000_000_000 + i))
        created.append(task)
    await store.cancel(created[3])
    await store.cancel(created[17])
    other, _ = await store.create(new_task("someone-else-" + owner))

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.list_for(owner, limit=10, cursor=cursor)
        seen += [t.id for t in page.tasks]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [t.id for t in reversed(created)]
    assert pages == 3
    assert other.id not in seen

    cancelled = await store.list_for(owner, limit=1, status=TaskStatus.CANCELLED)
    assert [t.id for t in cancelled.tasks] == [created[17].id]
    rest = await store.list_for(owner, limit=5, cursor=cancelled.next_cursor, status=TaskStatus.CANCELLED)
    assert [t.id for t in rest.tasks] == [created[3].id]
    assert rest.next_cursor is None
    with pytest.raises(ValueError):
        await store.list_for(owner, cursor="not-a-cursor")


async def test_events_replay_after_an_id_and_stay_bounded(store: TaskStore, owner: str):
    await store.create(new_task(owner))
    events = await store.events.read(owner, "0-0")
    mark = events[-1].id
    second, _ = await store.create(new_task(owner))
    await store.cancel(second)
    later = await store.events.read(owner, mark)
    assert [(e.task.id, e.name) for e in later] == [
        (second.id, EventName.QUEUED),
        (second.id, EventName.CANCELLED),
    ]
    assert later[1].data()["status"] == "cancelled"
    assert await store.events.last_id(owner) == later[-1].id
    for _ in range(200):
        await store.create(new_task(owner))
    kept = await store.events.read(owner, "0-0", count=10_000)
    assert len(kept) < 200  # MAXLEN ~ 50 (approximate trimming keeps a little more)


async def test_blocking_read_on_a_dedicated_connection(store: TaskStore, owner: str):
    client = store.events.dedicated_client(socket_timeout=10)
    try:
        start = await store.events.last_id(owner)
        reader = asyncio.create_task(store.events.read(owner, start, block_ms=5000, client=client))
        await asyncio.sleep(0.1)
        task, _ = await store.create(new_task(owner))
        got = await reader
        assert [(e.task.id, e.name) for e in got] == [(task.id, EventName.QUEUED)]
    finally:
        await client.aclose(close_connection_pool=True)

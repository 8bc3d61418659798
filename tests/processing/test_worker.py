"""Real ARQ worker processes (``run_worker``) and tasks submitted with ``submit_task``:
completion, timeouts and retries, crashes, kill -9, SIGTERM, cancel, concurrency."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from processing.submit import cancel_task, submit_task
from processing.tasks import EventName, TaskStatus
from tests.processing.forking import pool_processes, processes_of_task
from tests.processing.harness import Bench, open_bench

TEXT = "Grüße aus Köln: straße, café, ÆØÅ — done.\n".encode() * 2000


@pytest.fixture
async def bench(tmp_path: Path, redis_database: str, request) -> AsyncIterator[Bench]:
    changes = getattr(request, "param", {})
    bench = await open_bench(tmp_path, redis_database, **changes)
    try:
        yield bench
    finally:
        await asyncio.to_thread(bench.stop_workers)
        await bench.arq.aclose()


def done(task) -> bool:
    return task.status.is_final


async def no_process_left(task_id: str) -> bool:
    for _ in range(200):
        if not await asyncio.to_thread(processes_of_task, task_id):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_submit_is_idempotent_and_the_task_completes(bench: Bench):
    task = await bench.submit(TEXT)
    repeat = await submit_task(
        bench.tasks, bench.events, bench.arq, task_id=task.id, owner=bench.owner,
        filename="input.txt", size=len(TEXT), operation="uppercase", max_attempts=4,
    )  # fmt: skip
    assert repeat.id == task.id
    assert await bench.arq.zcard(bench.config.queue_name) == 1
    bench.start_worker()
    final = await bench.wait_for(task.id, done)
    assert final.status is TaskStatus.COMPLETED, final
    assert final.attempts == 1 and final.error is None and final.progress == 1.0
    result = await asyncio.to_thread(bench.config.result_path(task.id).read_bytes)
    assert result == TEXT.decode().upper().encode()
    names = [e.name for e in await bench.events_of(task.id)]
    assert names[0] is EventName.QUEUED and names.count(EventName.QUEUED) == 1
    assert names[-1] is EventName.COMPLETED
    assert set(names[1:-1]) == {EventName.PROGRESS}


@pytest.mark.parametrize("bench", [{"job_timeout": 1.0}], indirect=True)
async def test_hanging_tries_are_killed_retried_then_failed(bench: Bench):
    task = await bench.submit(b"x", operation="fault-hang", max_attempts=3)
    bench.start_worker()
    final = await bench.wait_for(task.id, done)
    assert final.status is TaskStatus.FAILED
    assert final.attempts == 3
    assert final.error == "try 3 of 3: timed out after 1 s"
    names = [e.name for e in await bench.events_of(task.id)]
    assert names.count(EventName.RETRYING) == 2
    assert names[-1] is EventName.FAILED
    assert await no_process_left(task.id), "the hanging child's group must be gone"
    assert not bench.config.result_path(task.id).exists()


async def test_a_crashing_child_is_retried(bench: Bench):
    flaky = await bench.submit(b"same bytes", operation="fault-crash-once")
    broken = await bench.submit(b"whatever", operation="fault-crash", max_attempts=2)
    bench.start_worker()
    ok = await bench.wait_for(flaky.id, done)
    assert ok.status is TaskStatus.COMPLETED and ok.attempts == 2
    assert bench.config.result_path(flaky.id).read_bytes() == b"same bytes"
    bad = await bench.wait_for(broken.id, done)
    assert bad.status is TaskStatus.FAILED and bad.attempts == 2
    assert bad.error == "try 2 of 2: operation process exited with status 3"


async def test_worker_killed_with_sigkill_mid_job_recovers(bench: Bench):
    payload = os.urandom(200_000)
    task = await bench.submit(payload, operation="fault-slow")
    victim = bench.start_worker()
    await bench.wait_for(task.id, lambda t: t.status is TaskStatus.PROCESSING and t.progress_bytes > 0)
    children = await asyncio.to_thread(processes_of_task, task.id)
    assert children, "the try's child should be running"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()
    assert await no_process_left(task.id), "PDEATHSIG should take the child along"
    bench.start_worker()
    final = await bench.wait_for(task.id, done)
    print(f"recovered {time.monotonic() - killed_at:.1f} s after kill -9 (lease_ttl=3 s)")
    assert final.status is TaskStatus.COMPLETED
    assert final.attempts == 2
    assert bench.config.result_path(task.id).read_bytes() == payload
    leftovers = list(bench.config.results_dir.glob(f"{task.id}.*"))
    assert all(p.suffix == ".tmp" for p in leftovers)  # only the dead try's temporary


async def test_a_forking_operation_leaves_nothing_after_the_workers_kill_9(bench: Bench):
    payload = os.urandom(100_000)
    task = await bench.submit(payload, operation="fault-fork")
    victim = bench.start_worker()
    await bench.wait_for(task.id, lambda t: t.status is TaskStatus.PROCESSING and t.progress_bytes > 0)
    tree = await asyncio.to_thread(pool_processes, victim.pid)
    assert len(tree) == 3, "two warm children and the grandchild one of them forked"
    assert len(await asyncio.to_thread(processes_of_task, task.id)) == 2  # the try and its fork
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    for _ in range(200):
        if not await asyncio.to_thread(pool_processes, victim.pid):
            break
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(pool_processes, victim.pid) == []
    assert await no_process_left(task.id)
    bench.start_worker()  # the next try forks again; the pool retires that child after it
    final = await bench.wait_for(task.id, done)
    assert final.status is TaskStatus.COMPLETED and final.attempts == 2
    assert bench.config.result_path(task.id).read_bytes() == payload
    assert await no_process_left(task.id)


async def test_a_freed_slot_takes_the_next_job_without_waiting_for_a_poll(bench: Bench):
    tasks = [await bench.submit(b"small %d" % i) for i in range(3)]
    # One slot and a 60 s poll: the first job starts on the first poll; the others can
    # only start within the test's 20 s if a freed slot looks at the queue at once.
    bench.start_worker(max_jobs=1, poll_delay=60.0)
    for i, task in enumerate(tasks):
        final = await bench.wait_for(task.id, done, within=20)
        assert final.status is TaskStatus.COMPLETED
        assert bench.config.result_path(task.id).read_bytes() == b"SMALL %d" % i


async def test_a_task_survives_six_worker_restarts_and_still_completes(bench: Bench):
    """ARQ counts every start; our budget (2 failed tries here) is what decides, and a
    start cut short by a dying worker is not a failed try."""
    payload = os.urandom(100_000)
    task = await bench.submit(payload, operation="fault-slow", max_attempts=2)
    for start in range(1, 7):
        worker = bench.start_worker()
        await bench.wait_for(
            task.id,
            lambda t, start=start: (
                t.status is TaskStatus.PROCESSING and t.attempts == start and t.progress_bytes > 0
            ),
        )
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    bench.start_worker()
    final = await bench.wait_for(task.id, done)
    assert final.status is TaskStatus.COMPLETED
    assert (final.attempts, final.failures, final.error) == (7, 0, None)
    assert bench.config.result_path(task.id).read_bytes() == payload


async def test_sigterm_requeues_without_burning_a_try(bench: Bench):
    task = await bench.submit(b"abc" * 1000, operation="fault-slow")
    first = bench.start_worker()
    await bench.wait_for(task.id, lambda t: t.status is TaskStatus.PROCESSING and t.progress_bytes > 0)
    first.send_signal(signal.SIGTERM)
    assert first.wait(15) == 0
    requeued = await bench.tasks.get(task.id)
    assert requeued.status is TaskStatus.QUEUED
    assert await no_process_left(task.id)
    bench.start_worker()
    final = await bench.wait_for(task.id, done)
    assert final.status is TaskStatus.COMPLETED
    assert final.attempts == 1, "a shutdown gives the try back"
    names = [e.name for e in await bench.events_of(task.id)]
    assert names.count(EventName.QUEUED) == 2


@pytest.mark.parametrize("bench", [{"max_jobs": 1}], indirect=True)
async def test_cancel_running_and_queued(bench: Bench):
    running = await bench.submit(b"r" * 1000, operation="fault-slow")
    bench.start_worker()
    await bench.wait_for(running.id, lambda t: t.status is TaskStatus.PROCESSING)
    # Queued only now: two jobs enqueued in the same millisecond start in id order.
    queued = await bench.submit(b"q" * 1000, operation="fault-slow")
    assert (await bench.tasks.get(queued.id)).status is TaskStatus.QUEUED

    cancelled = await cancel_task(bench.tasks, bench.arq, await bench.tasks.get(queued.id))
    assert cancelled is not None and cancelled.status is TaskStatus.CANCELLED
    cancelled = await cancel_task(bench.tasks, bench.arq, await bench.tasks.get(running.id))
    assert cancelled is not None and cancelled.status is TaskStatus.CANCELLED
    assert await no_process_left(running.id), "the running child must be killed"
    assert await cancel_task(bench.tasks, bench.arq, cancelled) is None  # already final

    after = await bench.submit(b"next", operation="uppercase")
    final = await bench.wait_for(after.id, done)
    assert final.status is TaskStatus.COMPLETED  # the worker slot was freed
    for task_id in (running.id, queued.id):
        task = await bench.tasks.get(task_id)
        assert task.status is TaskStatus.CANCELLED
        assert not bench.config.result_path(task_id).exists()
    assert (await bench.tasks.get(queued.id)).attempts == 0  # never started


async def test_at_most_max_jobs_run_at_once(bench: Bench):
    tasks = [await bench.submit(b"p" * 100, operation="fault-slow") for _ in range(6)]
    bench.start_worker()
    finals = [await bench.wait_for(t.id, done) for t in tasks]
    assert all(t.status is TaskStatus.COMPLETED for t in finals)
    points = sorted(
        [(t.started_ms, 1) for t in finals] + [(t.finished_ms, -1) for t in finals],
        key=lambda p: (p[0], p[1]),
    )
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    assert peak == 2


@pytest.mark.parametrize("bench", [{"shutdown_grace": 20.0}], indirect=True)
async def test_sigterm_lets_a_running_try_finish_within_the_grace(bench: Bench):
    task = await bench.submit(b"xyz" * 1000, operation="fault-slow")
    worker = bench.start_worker(max_jobs=1)
    await bench.wait_for(task.id, lambda t: t.status is TaskStatus.PROCESSING and t.progress_bytes > 0)
    # Queued only now: two jobs enqueued in the same millisecond start in id order, so
    # queuing both first let this one start first now and then.
    queued = await bench.submit(b"later", operation="uppercase")
    # Claimed ahead of the only try slot (processing.slots), it waits with its task queued.
    await wait_until_claimed(bench, queued.id)
    assert (await bench.tasks.get(queued.id)).status is TaskStatus.QUEUED
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 30) == 0
    finished = await bench.tasks.get(task.id)
    assert finished.status is TaskStatus.COMPLETED and finished.attempts == 1
    # A stopping worker begins nothing new: the claimed job went back to the queue.
    assert (await bench.tasks.get(queued.id)).status is TaskStatus.QUEUED
    bench.start_worker()
    later = await bench.wait_for(queued.id, done)
    assert later.status is TaskStatus.COMPLETED
    assert later.attempts == 1 and later.error is None  # given back as the same try


async def wait_until_claimed(bench: Bench, task_id: str) -> None:
    """Until a worker holds the task's ARQ job (its in-progress key) and, waiting for a try
    slot, has given its start back to ARQ's counter (processing.slots): from then on its
    worker's death costs the task no try. Before that, it costs one start, as documented."""
    for _ in range(200):
        claimed = await bench.arq.exists("arq:in-progress:" + task_id)
        if claimed and await bench.arq.get("arq:retry:" + task_id) == b"0":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {task_id} was never claimed, or never gave its start back")


async def test_a_job_claimed_ahead_of_a_slot_reruns_soon_after_the_workers_kill_9(bench: Bench):
    running = await bench.submit(b"xyz" * 1000, operation="fault-slow")
    victim = bench.start_worker(max_jobs=1)
    await bench.wait_for(running.id, lambda t: t.status is TaskStatus.PROCESSING)
    # Queued only now (see the SIGTERM test above: queued in the same millisecond, this
    # one could start first, finish, and never be seen waiting).
    waiting = await bench.submit(b"later", operation="uppercase")
    await wait_until_claimed(bench, waiting.id)
    assert (await bench.tasks.get(waiting.id)).status is TaskStatus.QUEUED
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()
    bench.start_worker()
    later = await bench.wait_for(waiting.id, done)
    # Its claim was a lease (lease_ttl), not ARQ's timeout + 10 s: free again within it.
    assert time.monotonic() - killed_at < bench.config.lease_ttl + 5
    assert later.status is TaskStatus.COMPLETED and later.attempts == 1 and later.error is None


async def test_an_idle_worker_starts_a_new_job_when_rung_not_at_its_poll(bench: Bench):
    """The API rings the queue's doorbell after enqueuing (processing.wake): an idle worker
    starts the job at once. Its poll here is 10 s away, so three starts well under a
    second each are no luck of timing (about one chance in a thousand)."""
    bench.start_worker(poll_delay=10.0)
    warm = await bench.submit(b"first")
    await bench.wait_for(warm.id, done, within=30)  # listening by now, whatever rang first
    for _ in range(3):
        await asyncio.sleep(0.2)
        task = await bench.submit(b"rung")
        final = await bench.wait_for(task.id, done, within=30)
        assert final.status is TaskStatus.COMPLETED
        assert final.started_ms is not None and final.started_ms - final.created_ms < 1000


async def test_free_slots_read_the_queue_and_claim_in_one_script_passing_over_running_jobs(bench: Bench):
    """The claim (processing.worker._CLAIM), for a freed slot as for ARQ's poll: due jobs in queue order, none that
    runs anywhere (an in-progress key), none deferred, at most as many as slots are free,
    each claimed for the lease's TTL."""
    from arq.constants import in_progress_key_prefix

    from processing.worker import _CLAIM

    queue, now = "claim-next-test", 1_000_000
    await bench.arq.zadd(queue, {"running": now - 40, "a": now - 30, "b": now - 20, "c": now - 10})
    await bench.arq.zadd(queue, {"later": now + 5000})
    await bench.arq.set(in_progress_key_prefix + "running", b"1", px=60_000)
    claim = bench.arq.register_script(_CLAIM)

    def args(wanted: int) -> list[object]:
        return [now, 4000, wanted, in_progress_key_prefix, 100, 0]

    assert await claim(keys=[queue], args=args(2)) == [b"a", now - 30, b"b", now - 20]
    assert 3000 < await bench.arq.pttl(in_progress_key_prefix + "a") <= 4000
    assert await bench.arq.pttl(in_progress_key_prefix + "running") > 50_000  # not touched
    assert await claim(keys=[queue], args=args(3)) == [b"c", now - 10]  # "later" is not due
    assert await claim(keys=[queue], args=args(1)) == []

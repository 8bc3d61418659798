"""The floors: a bare ARQ worker (``max_jobs=2``) running a no-op job.

``python -m bench.arq_floor REDIS_URL QUEUE POLL_DELAY`` runs a worker whose only
job writes the time it started into Redis; the latency scenario enqueues it and
compares ARQ's own enqueue-to-start time with tusd-py's.

``python -m bench.arq_floor drain REDIS_URL COUNT POLL_DELAY`` queues COUNT no-op jobs
while no worker runs, drains them with one bare worker in burst mode and prints
``{"tasks_per_s": ...}`` from ARQ's own start and finish times: the most any ARQ-based
worker can do here (bench/peers.py compares tusd-py with it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from arq import Worker
from arq.connections import RedisSettings, create_pool
from arq.worker import func


async def mark_start(ctx: dict[str, Any], key: str) -> None:
    await ctx["redis"].set(key, repr(time.time()), ex=600)


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def _drain(redis_url: str, count: int, poll_delay: float) -> float:
    queue = "bench:drain"
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue)
    try:
        await pool.flushdb()
        for _ in range(count):
            await pool.enqueue_job("noop")
        worker = Worker(
            functions=[func(noop, name="noop")],
            redis_pool=pool,
            queue_name=queue,
            poll_delay=poll_delay,
            max_jobs=2,
            burst=True,
            handle_signals=False,
        )
        await worker.main()
        results = await pool.all_job_results()
    finally:
        await pool.aclose()
    if len(results) != count:
        raise RuntimeError(f"{len(results)} of {count} no-op jobs have a result")
    first = min(r.start_time for r in results)
    last = max(r.finish_time for r in results)
    return count / (last - first).total_seconds()


def main() -> None:
    if sys.argv[1] == "drain":
        rate = asyncio.run(_drain(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
        print(json.dumps({"tasks_per_s": rate}))
        return
    redis_url, queue, poll_delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    asyncio.set_event_loop(asyncio.new_event_loop())
    Worker(
        functions=[func(mark_start, name="mark_start")],
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name=queue,
        poll_delay=poll_delay,
        max_jobs=2,
    ).run()


if __name__ == "__main__":
    main()

"""The floor for queue latency: a bare ARQ worker running a no-op job.

``python -m bench.arq_floor REDIS_URL QUEUE POLL_DELAY`` runs a worker whose only
job writes the time it started into Redis; the latency scenario enqueues it and
compares ARQ's own enqueue-to-start time with tusd-py's.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from arq import Worker
from arq.connections import RedisSettings
from arq.worker import func


async def mark_start(ctx: dict[str, Any], key: str) -> None:
    await ctx["redis"].set(key, repr(time.time()), ex=600)


def main() -> None:
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

"""A doorbell for idle workers: rung after a job is enqueued, so that a worker with a
free slot reads the queue at once instead of at its next poll.

ARQ cannot block on its queue; it polls it every ``poll_delay`` (50 ms by default), so
a task enqueued while every worker idles waits 25 ms on average for its start, which
for a 100 MB ``uppercase`` (about 55 ms of work here) is half as long again. The API
rings one Redis pub/sub channel per queue after each enqueue (one PUBLISH per finished
upload); every worker listens on its own connection. A ring is a hint and never
needed: a worker that misses it (not listening yet, Redis away) finds the job at its
next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from processing.outage import OUTAGE_ERRORS
from processing.records import KEY_PREFIX

logger = logging.getLogger("processing.wake")

RELISTEN_DELAY = 1.0
"""Seconds before a listener whose connection failed listens again (the poll covers)."""


def channel(queue_name: str) -> str:
    return f"{KEY_PREFIX}wake:{queue_name}"


async def ring(redis: Redis, queue_name: str) -> None:
    """Tell the workers a job is waiting; a failure is logged, never raised (a hint)."""
    try:
        await redis.publish(channel(queue_name), b"1")
    except RedisError as exc:
        logger.debug("could not ring the workers: %s", exc)


async def listen(redis: Redis, queue_name: str, on_ring: Callable[[], None]) -> None:
    """Call ``on_ring`` for each ring until cancelled; listens again after an error."""
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel(queue_name))
                async for _ in pubsub.listen():
                    on_ring()
        except OUTAGE_ERRORS:
            await asyncio.sleep(RELISTEN_DELAY)

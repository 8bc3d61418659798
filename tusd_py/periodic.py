"""Run a chore every few seconds on one API node at a time.

Several API nodes share a Redis; a short-lived lock (SET NX EX) makes sure one
of them runs each round, and a node that dies mid-round holds it no longer
than its expiry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("tusd_py.periodic")


async def every(interval: float, redis: Redis, lock_key: str, chore: Callable[[], Awaitable[object]]) -> None:
    """Forever: wait ``interval`` seconds, then run ``chore`` if this node wins the round."""
    lock_seconds = max(1, int(interval * 0.9))
    while True:
        await asyncio.sleep(interval)
        try:
            if await redis.set(lock_key, "1", nx=True, ex=lock_seconds):
                await chore()
        except (RedisError, OSError):
            logger.warning("%s: Redis unavailable, skipping this round", lock_key)
        except Exception:
            logger.exception("%s failed", lock_key)

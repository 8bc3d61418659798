"""Keep a running job's ARQ lock short-lived, and notice a cancel from inside.

ARQ marks a started job with ``arq:in-progress:<job id>`` for the largest function
timeout + 10 s; a worker killed with -9 leaves the key behind and nobody may rerun
the job until it expires (over two minutes with the default timeout). While a try
runs, :class:`Lease` re-arms that key with a short TTL (``ttl``, every ``ttl / 3``),
so after a crash the job is free again within ``ttl`` seconds.

Every beat also reads the task's status: if the API cancelled it, the lease cancels
the try at once — a second path besides ARQ's abort, in case that request is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from processing.outage import Outage
from processing.tasks import TaskStatus, task_key, text

logger = logging.getLogger("processing.lease")


class Lease:
    """``async with Lease(...)`` around a try; ``on_cancelled`` is called (once) when the
    task turns ``cancelled`` or disappears while the try runs."""

    def __init__(
        self,
        redis: Redis,
        job_id: str,
        task_id: str,
        ttl: float,
        on_cancelled: Callable[[], object],
        *,
        armed: bool = False,
    ) -> None:
        self.redis = redis
        self.key = in_progress_key_prefix + job_id
        self.task_key = task_key(task_id)
        self.ttl_ms = int(ttl * 1000)
        self.interval = ttl / 3
        self.on_cancelled = on_cancelled
        self._beats: asyncio.Task[None] | None = None
        self.armed = armed
        """True when the caller already set the key's TTL (saves the first beat's round trip)."""
        self._outage = Outage(f"lease of task {task_id}", logger)
        """One log line when beats start failing and one when they go through again."""

    async def beat(self) -> None:
        """Re-arm the key; report a cancelled task. Never raises on a Redis hiccup: the
        next beat tries again, and the key outlives two missed beats."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.pexpire(self.key, self.ttl_ms)
                pipe.hget(self.task_key, "status")
                _, status = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._outage.failed(exc)  # the beat keeps its own pace; only the logging is wanted
            return
        self._outage.answered()
        if status is None or text(status) == TaskStatus.CANCELLED:
            self.on_cancelled()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()

    async def __aenter__(self) -> Lease:
        if not self.armed:
            await self.beat()
        self._beats = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Cancel without awaiting: awaiting here could swallow a cancellation aimed at
        # the job itself.
        if self._beats is not None:
            self._beats.cancel()

"""At most ``max_jobs`` tries at once per worker, with a job claimed ahead of a free slot.

ARQ starts a job only in a free one of its ``max_jobs`` slots, and between one try's
end and the next try's start a slot spends four Redis round trips one after another
(ARQ's finish, the look at the queue that claims, ARQ's run pipeline, our ``begin_try``)
while its child idles: for a 1 KB task that is as long as the try itself. So the
worker gives ARQ ``max_jobs + PREFETCHED_JOBS`` slots, and a job runs its try only
while it holds one of ``max_jobs`` :class:`TrySlots`. A claimed job waits here with
that bookkeeping done, as Celery's prefetched messages wait for a pool process.

A waiting job keeps its claim alive with a :class:`~processing.lease.Lease` (a dead
worker's jobs are free again within ``lease_ttl``, waiting or running) and gives its
start back to ARQ's counter while it waits (``begin_try`` counts it again): it has not
begun a try, the task is still ``queued``, and a worker's death costs it nothing. When the worker stops, a job that has not
begun leaves without a try and the job goes back to the queue as the same try.
``PREFETCHED_JOBS`` is one: more would hold work that another idle worker could run
(Celery's well-known prefetch trade-off) for little gain, since the ``max_jobs`` tries
of a worker seldom end within the same millisecond.
"""

from __future__ import annotations

import asyncio

PREFETCHED_JOBS = 1
"""Jobs a worker claims beyond ``max_jobs``; they wait for a try slot."""


class TrySlots:
    """``size`` try slots; :meth:`stop` makes jobs that have not begun leave."""

    def __init__(self, size: int) -> None:
        self._free = asyncio.Semaphore(size)
        self.stopping = False

    async def take_free(self) -> bool:
        """Take a slot if one is free now; False (and nothing taken) if the job must wait.
        An unlocked semaphore's ``acquire`` returns without suspending, so no other job
        can come between the check and the take."""
        if self._free.locked():
            return False
        await self._free.acquire()
        return True

    async def acquire(self) -> None:
        await self._free.acquire()

    def release(self) -> None:
        self._free.release()

    def stop(self) -> None:
        """The worker stops: jobs waiting for a slot give their claim back once they get one
        (or when the worker cancels them), without beginning a try."""
        self.stopping = True

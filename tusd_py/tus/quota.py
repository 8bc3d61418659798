"""Per-owner caps on unfinished uploads: the interface the handler sees.

An owner's unfinished uploads are counted with their declared bytes (a deferred
length counts as the maximum size until it is known). ``reserve`` checks the caps
and records the upload in one atomic step, so two concurrent creations cannot
both slip under a cap. Entries are released on completion, termination, eviction
and expiry; when a cap is hit the handler reconciles the owner's entries against
the store and evicts idle uploads (:mod:`~tusd_py.tus.admission`) before it refuses.
Implementations: :class:`~tusd_py.tus.redisquota.RedisQuota` (shared by every node)
and :class:`~tusd_py.tus.memory.MemoryQuota` (one process).
"""

from __future__ import annotations

from typing import Protocol


class QuotaExceeded(Exception):
    """The owner is at a cap: ``reason`` is ``"uploads"`` or ``"bytes"``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Quota(Protocol):
    #: Seconds a refused client is told to wait (``Retry-After`` of the 429).
    retry_after: int

    async def reserve(self, owner: str, upload_id: str, nbytes: int) -> None:
        """Count a new unfinished upload of ``nbytes`` (idempotent per upload);
        :class:`QuotaExceeded` past a cap."""
        ...

    async def update(self, owner: str, upload_id: str, nbytes: int) -> None:
        """A deferred length became known: count ``nbytes`` (never re-adds a released upload)."""
        ...

    async def release(self, owner: str, upload_id: str) -> None: ...

    async def held(self, owner: str) -> dict[str, int]:
        """The owner's counted uploads and their bytes."""
        ...

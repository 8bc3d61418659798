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

from .store import UploadInfo


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


class StorageQuota(Protocol):
    """A per-owner bound on everything the owner keeps (finished uploads too), beside the
    pending caps of :class:`Quota`. The application decides what else an upload holds
    (room for what it becomes, e.g. a task's result); the handler only reserves at
    creation, resizes when a deferred length is declared and releases on removal
    (termination, eviction, expiry). Completion releases nothing: the bytes stay."""

    #: The bound in bytes (named in the 403 the handler answers past it).
    limit: int

    async def reserve(self, info: UploadInfo, nbytes: int) -> bool:
        """Count the upload at ``nbytes`` (idempotent); False if that would pass the limit."""
        ...

    async def resize(self, info: UploadInfo, nbytes: int) -> None:
        """A deferred length became known (never re-adds a released upload)."""
        ...

    async def release(self, owner: str, upload_id: str) -> None: ...

    async def uploads(self, owner: str) -> list[str]:
        """The ids of the owner's counted uploads (for reconciliation against the store)."""
        ...

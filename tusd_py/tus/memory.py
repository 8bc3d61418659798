"""In-process :class:`~tusd_py.tus.locker.Locker` and :class:`~tusd_py.tus.quota.Quota`.

tusd's memorylocker, in asyncio: correct within one process (one event loop),
useless across processes or nodes. Its holders cannot die without their locks
(they live in the same process), so it needs no heartbeat to match RedisLocker. They let the protocol be tested in-process
over ``httpx.ASGITransport`` without Redis, and serve a single-node deployment
that does not want Redis for uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from .locker import Interruptible, LockTimeout
from .quota import QuotaExceeded
from .store import UploadInfo

logger = logging.getLogger("tusd_py.tus")


class MemoryLock(Interruptible):
    """A lock held in this process; interrupted when a waiter asks for it."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()

    @property
    def lost(self) -> bool:
        return False  # nothing can take a lock away inside one process

    def interrupt(self) -> None:
        self._interrupt()


class MemoryLocker:
    """:class:`~tusd_py.tus.locker.Locker` for one process."""

    def __init__(self) -> None:
        self._held: dict[str, MemoryLock] = {}
        self._draining = False

    def drain(self) -> None:
        self._draining = True
        for held in list(self._held.values()):
            held.interrupt()

    @contextlib.asynccontextmanager
    async def lock(
        self, upload_id: str, *, wait: float, request_release: bool = True
    ) -> AsyncIterator[MemoryLock]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (holder := self._held.get(upload_id)) is not None:
            if request_release:
                holder.interrupt()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LockTimeout(upload_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(holder.released.wait(), remaining)
        held = MemoryLock()
        self._held[upload_id] = held
        if self._draining:
            held.interrupt()
        try:
            yield held
        finally:
            del self._held[upload_id]
            held.released.set()


class MemoryQuota:
    """:class:`~tusd_py.tus.quota.Quota` for one process (check and record are atomic:
    no ``await`` between them)."""

    def __init__(self, *, max_uploads: int, max_bytes: int, retry_after: int = 60) -> None:
        self.max_uploads = max_uploads
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self._held: dict[str, dict[str, int]] = {}

    async def reserve(self, owner: str, upload_id: str, nbytes: int) -> None:
        held = self._held.setdefault(owner, {})
        if upload_id in held:
            return
        if len(held) + 1 > self.max_uploads:
            raise QuotaExceeded("uploads")
        if sum(held.values()) + nbytes > self.max_bytes:
            raise QuotaExceeded("bytes")
        held[upload_id] = nbytes

    async def update(self, owner: str, upload_id: str, nbytes: int) -> None:
        held = self._held.get(owner, {})
        if upload_id in held:
            held[upload_id] = nbytes

    async def release(self, owner: str, upload_id: str) -> None:
        self._held.get(owner, {}).pop(upload_id, None)

    async def held(self, owner: str) -> dict[str, int]:
        return dict(self._held.get(owner, {}))


class MemoryStorageQuota:
    """:class:`~tusd_py.tus.quota.StorageQuota` for one process: each upload counts its
    own bytes, nothing more (no results in a protocol-only deployment)."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, dict[str, int]] = {}

    async def reserve(self, info: UploadInfo, nbytes: int) -> bool:
        held = self._held.setdefault(info.owner, {})
        if info.id in held:
            return True
        if sum(held.values()) + nbytes > self.limit:
            return False
        held[info.id] = nbytes
        return True

    async def resize(self, info: UploadInfo, nbytes: int) -> None:
        held = self._held.get(info.owner, {})
        if info.id in held:
            held[info.id] = nbytes

    async def release(self, owner: str, upload_id: str) -> None:
        self._held.get(owner, {}).pop(upload_id, None)

    async def uploads(self, owner: str) -> list[str]:
        return list(self._held.get(owner, {}))

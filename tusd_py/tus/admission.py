"""Making room for a new upload under the per-owner caps (quota reconciliation, eviction).

The pending *bytes* cap bounds disk; the pending *count* cap only bounds
bookkeeping. When a creation would pass either, before answering 429 we
1. drop the owner's quota entries that are stale (the upload is gone, complete
   or expired: an entry leaked by a crash must not block its owner), then
2. evict the owner's own unfinished uploads that nobody wrote to for
   ``idle_seconds``, least recently written first, through the handler's normal
   termination path (an unfinished final goes together with its parts),
retrying the reservation after each step. Only when nothing is left to evict is
the answer 429 (a pending cap) or 403 (the storage quota, which also counts finished
uploads and what they became: only the owner's deletions free it for good). An abandoned upload therefore never locks its owner out, and an
attacker still never holds more than the caps at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from . import errors
from .quota import Quota, QuotaExceeded, StorageQuota
from .store import Store, UploadInfo, UploadNotFound

#: ``terminate(upload_id, still)``: remove the upload if ``still(info)`` holds under its lock.
Terminate = Callable[[str, Callable[[UploadInfo], bool]], Awaitable[bool]]


class Admission:
    """Reserves quota for new uploads, making room as described above."""

    def __init__(
        self,
        quota: Quota | None,
        store: Store,
        terminate: Terminate,
        *,
        expiry_seconds: float,
        idle_seconds: float,
        storage: StorageQuota | None = None,
    ) -> None:
        self.quota = quota
        self.storage = storage
        self.store = store
        self.terminate = terminate
        self.expiry_seconds = expiry_seconds
        self.idle_seconds = idle_seconds

    async def reserve(self, info: UploadInfo, nbytes: int) -> None:
        """Count the upload under the pending caps and the storage quota, or raise the
        429 (pending caps) or 403 (storage quota) once nothing can be reconciled or evicted."""
        owner, reconciled = info.owner, False
        tried: set[str] = set()
        while True:
            refusal = await self._try_reserve(info, nbytes)
            if refusal is None:
                return
            if not reconciled:
                reconciled = True
                await self.reconcile(owner)
                continue
            if await self._evict_one(owner, tried):
                continue
            raise refusal

    async def _try_reserve(self, info: UploadInfo, nbytes: int) -> errors.TusError | None:
        """Both reservations, or neither: the refusal to answer if one does not fit."""
        if self.quota is not None:
            try:
                await self.quota.reserve(info.owner, info.id, nbytes)
            except QuotaExceeded as exceeded:
                what = "unfinished uploads" if exceeded.reason == "uploads" else "pending bytes"
                return errors.too_many_uploads(what, self.quota.retry_after)
        if self.storage is not None and not await self.storage.reserve(info, nbytes):
            if self.quota is not None:
                await self.quota.release(info.owner, info.id)
            return errors.storage_quota_exceeded(self.storage.limit)
        return None

    async def reconcile(self, owner: str) -> bool:
        """Drop quota entries of uploads that are gone (and, for the pending caps, complete
        or expired ones)."""
        released = False
        now = time.time()
        if self.quota is not None:
            for upload_id in await self.quota.held(owner):
                try:
                    info = await self.store.get(upload_id)
                    stale = info.owner != owner or info.complete or info.expired(self.expiry_seconds, now)
                except UploadNotFound:
                    stale = True
                if stale:
                    await self.quota.release(owner, upload_id)
                    released = True
        if self.storage is not None:
            for upload_id in await self.storage.uploads(owner):
                try:
                    stale = (await self.store.get(upload_id)).owner != owner
                except UploadNotFound:
                    stale = True
                if stale:
                    await self.storage.release(owner, upload_id)
                    released = True
        return released

    async def _evict_one(self, owner: str, tried: set[str]) -> bool:
        """Terminate the owner's least recently written idle group; False if there is none."""
        if self.quota is None:
            return False
        now = time.time()
        infos: dict[str, UploadInfo] = {}
        for upload_id in await self.quota.held(owner):
            if upload_id in tried:
                continue
            try:
                info = await self.store.get(upload_id)
            except UploadNotFound:
                continue
            if info.owner == owner and not info.complete:
                infos[info.id] = info
        # A part of an unfinished final is evicted with its final, never alone.
        in_finals = {part_id for info in infos.values() if info.final for part_id in info.parts}
        groups = []
        for info in infos.values():
            if info.id in in_finals:
                continue
            group = [info]
            if info.final:  # an unfinished final goes with its parts
                for part_id in info.parts:
                    try:
                        part = infos.get(part_id) or await self.store.get(part_id)
                    except UploadNotFound:
                        continue
                    if part.owner == owner:
                        group.append(part)
            last_write = max(member.updated_at or member.created_at for member in group)
            if now - last_write >= self.idle_seconds:
                groups.append((last_write, group))
        if not groups:
            return False
        groups.sort(key=lambda entry: entry[0])
        _, group = groups[0]
        cutoff = time.time() - self.idle_seconds
        for member in group:
            tried.add(member.id)
            # Still idle under its lock: a write that started meanwhile keeps its upload.
            await self.terminate(member.id, lambda info: (info.updated_at or info.created_at) <= cutoff)
        return True

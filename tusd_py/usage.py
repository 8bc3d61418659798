"""The storage quota as the tus handler sees it, and a user's usage as ``/auth/me`` shows it.

:class:`LedgerStorageQuota` is the :class:`~tusd_py.tus.quota.StorageQuota` the handler
gets: an upload counts its own bytes and, unless it is partial (partials never become
tasks), room for its task's result (:func:`processing.usage.result_room`), both in the
:class:`~processing.usage.StorageLedger` the worker charges results to. Releasing an
upload frees its bytes and its unused room; a written result stays until retention or
account removal frees it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from processing.tasks import TaskStore
from processing.usage import StorageLedger, result_room, room_entry, upload_entry
from tusd_py.tus import BackendUnavailable, Quota, UploadInfo

T = TypeVar("T")
_UPLOAD = upload_entry("")


class LedgerStorageQuota:
    """:class:`~tusd_py.tus.quota.StorageQuota` on the shared ledger (Redis errors raise
    ``BackendUnavailable``, which the handler answers 423)."""

    def __init__(self, ledger: StorageLedger) -> None:
        self.ledger = ledger
        self.limit = ledger.limit

    def _entries(self, info: UploadInfo, nbytes: int) -> dict[str, int]:
        entries = {upload_entry(info.id): nbytes}
        if not info.partial:
            entries[room_entry(info.id)] = result_room(nbytes)
        return entries

    async def reserve(self, info: UploadInfo, nbytes: int) -> bool:
        return await _call(self.ledger.reserve(info.owner, self._entries(info, nbytes)))

    async def resize(self, info: UploadInfo, nbytes: int) -> None:
        await _call(self.ledger.resize(info.owner, self._entries(info, nbytes)))

    async def release(self, owner: str, upload_id: str) -> None:
        await _call(self.ledger.release(owner, upload_entry(upload_id), room_entry(upload_id)))

    async def uploads(self, owner: str) -> list[str]:
        entries = await _call(self.ledger.entries(owner))
        return [name[len(_UPLOAD) :] for name in entries if name.startswith(_UPLOAD)]


class Usage:
    """``usage`` of ``GET /auth/me``: what a user keeps and may keep."""

    def __init__(self, ledger: StorageLedger, quota: Quota, tasks: TaskStore, *, max_unfinished_tasks: int):
        self.ledger = ledger
        self.quota = quota
        self.tasks = tasks
        self.max_unfinished_tasks = max_unfinished_tasks

    async def __call__(self, owner: str) -> dict[str, Any]:
        return {
            "bytes_used": await self.ledger.used(owner),
            "bytes_allowed": self.ledger.limit,
            "unfinished_uploads": len(await self.quota.held(owner)),
            "unfinished_tasks": await self.tasks.unfinished_count(owner),
            "unfinished_tasks_allowed": self.max_unfinished_tasks,
        }


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except RedisError as error:
        raise BackendUnavailable(str(error)) from error

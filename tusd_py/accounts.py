"""What closing an account removes: the ``on_account_removed`` callback of ``DELETE /auth/me``.

``auth`` knows nothing of uploads, so the app hands :class:`AccountRemoval` to
``AuthEndpoints``. It runs after the user record is gone (so no new request of the
user is accepted) and, in this order: cancels the user's unfinished tasks (a running
try's child is killed by its worker within one poll), removes every upload through
the tus handler's termination path (under each upload's lock, asking a writer to let
go; this frees the pending caps and the storage quota), deletes the task records and
their result files, the event stream, and the user's storage ledger. Every step is
idempotent: a removal cut short (a crash, Redis away) can be run again with the id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from arq.connections import ArqRedis

from processing.events import EventLog
from processing.submit import cancel_task
from processing.tasks import TaskStore
from processing.usage import StorageLedger
from tusd_py.tus import Quota

logger = logging.getLogger("tusd_py.accounts")

RemoveUpload = Callable[[str], Awaitable[bool]]
_UPLOAD_PREFIX = "upload:"


class AccountRemoval:
    """``await removal(user_id)`` removes everything the user kept (see the module)."""

    def __init__(
        self,
        tasks: TaskStore,
        arq: ArqRedis,
        events: EventLog,
        ledger: StorageLedger,
        quota: Quota,
        remove_upload: RemoveUpload,
        *,
        results_dir: Path,
    ) -> None:
        self.tasks = tasks
        self.arq = arq
        self.events = events
        self.ledger = ledger
        self.quota = quota
        self.remove_upload = remove_upload
        self.results_dir = results_dir

    async def __call__(self, owner: str) -> None:
        task_ids = await self.tasks.ids_of(owner)
        for task_id in task_ids:
            task = await self.tasks.get_for(task_id, owner)
            if task is not None and not task.status.is_final:
                await cancel_task(self.tasks, self.arq, task)
        upload_ids = set(task_ids) | set(await self.quota.held(owner))
        upload_ids |= {
            name[len(_UPLOAD_PREFIX) :]
            for name in await self.ledger.entries(owner)
            if name.startswith(_UPLOAD_PREFIX)
        }
        for upload_id in sorted(upload_ids):
            await self.remove_upload(upload_id)
        for task_id in task_ids:
            task = await self.tasks.get_for(task_id, owner)
            if task is not None:
                await self.tasks.delete(task)
            await asyncio.to_thread(_remove_results, self.results_dir, task_id)
        for upload_id in await self.quota.held(owner):
            await self.quota.release(owner, upload_id)
        await self.events.redis.delete(self.events.stream_key(owner))
        await self.ledger.forget(owner)
        logger.info("account %s removed: %d tasks, %d uploads", owner, len(task_ids), len(upload_ids))


def _remove_results(results_dir: Path, task_id: str) -> None:
    """A task's result and any temporary of a try (blocking: run in a thread)."""
    for path in [results_dir / task_id, *results_dir.glob(f"{task_id}.*")]:
        path.unlink(missing_ok=True)

"""Forgetting uploads nobody writes any more: the expiry sweep.

Unfinished uploads expire ``expiry_seconds`` after their last write (the
``expiration`` extension). The sweep goes through the handler's termination
path, with a lock taken without waiting and without asking, so an upload being
written is never expired under its writer; it also clears the leftovers of
crashed requests from the store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from .store import Terminater, UploadInfo

#: Temporary files untouched this long are leftovers of crashed requests.
TEMPORARY_GRACE = 3600.0

#: ``terminate(upload_id, still)``: remove the upload if ``still(info)`` holds under its lock.
Terminate = Callable[[str, Callable[[UploadInfo], bool]], Awaitable[bool]]


async def sweep_expired(store: object, expiry_seconds: float, terminate: Terminate) -> int:
    """Remove expired uploads (and temporary leftovers); returns how many uploads went."""
    if not isinstance(store, Terminater):
        return 0
    removed = 0
    if expiry_seconds > 0:
        now = time.time()
        for candidate in await store.scan_unfinished():
            if not candidate.expired(expiry_seconds, now):
                continue
            if await terminate(candidate.id, lambda info: info.expired(expiry_seconds, time.time())):
                removed += 1
    await store.sweep_temporary(time.time() - max(expiry_seconds, TEMPORARY_GRACE))
    return removed

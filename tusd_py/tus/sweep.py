"""Forgetting uploads nobody writes any more: the expiry sweep.

Unfinished uploads expire ``expiry_seconds`` after their last write (the
``expiration`` extension). The sweep goes through the handler's termination
path, with a lock taken without waiting and without asking, so an upload being
written is never expired under its writer; it also clears the leftovers of
crashed requests from the store.

An upload whose bytes are all stored but whose finish never got recorded (its
node died, or Redis was away, between the last byte and the finish hook) is
not expired: the sweep finishes it (the hook is idempotent and runs under the
upload's lock, so it runs once), as the next HEAD on it would.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from .store import Terminater, UploadInfo

#: Temporary files untouched this long are leftovers of crashed requests.
TEMPORARY_GRACE = 3600.0

#: ``terminate(upload_id, still)``: remove the upload if ``still(info)`` holds under its lock.
Terminate = Callable[[str, Callable[[UploadInfo], bool]], Awaitable[bool]]
#: ``finish(upload_id)``: run the finish of a complete upload under its lock; True if it ran.
Finish = Callable[[str], Awaitable[bool]]


async def sweep_expired(
    store: object, expiry_seconds: float, terminate: Terminate, finish: Finish | None = None
) -> int:
    """Finish stranded complete uploads, remove expired ones (and temporary leftovers);
    returns how many uploads went."""
    if not isinstance(store, Terminater):
        return 0
    removed = 0
    now = time.time()
    for candidate in await store.scan_unfinished():
        if candidate.complete and not candidate.partial:
            if finish is not None:
                await finish(candidate.id)
            continue
        if expiry_seconds > 0:
            if not candidate.expired(expiry_seconds, now):
                continue
            if await terminate(candidate.id, lambda info: info.expired(expiry_seconds, time.time())):
                removed += 1
    await store.sweep_temporary(time.time() - max(expiry_seconds, TEMPORARY_GRACE))
    return removed

"""One writer per upload: the lock interface the handler sees.

A request that finds an upload's lock taken asks the holder to let go (tusd's
behaviour), then waits; the holder's interrupt callbacks fire and a PATCH stops
reading its body, keeps what it has and answers. Implementations:
:class:`~tusd_py.tus.redislocker.RedisLocker` (across processes and nodes) and
:class:`~tusd_py.tus.memory.MemoryLocker` (one process, for tests and one-node use).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

logger = logging.getLogger("tusd_py.tus")


class LockTimeout(Exception):
    """The lock stayed taken for the whole wait (answered 423 Locked)."""


class Lock(Protocol):
    """A held lock, as the handler sees it."""

    @property
    def interrupted(self) -> bool:
        """Someone asked for the lock, or it was lost: finish up quickly."""
        ...

    @property
    def lost(self) -> bool:
        """The lock expired or was taken over: do nothing that needs exclusivity."""
        ...

    def on_interrupt(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (once) when interrupted; returns a function that unregisters it."""
        ...


class Locker(Protocol):
    """Implementations also make a dead holder's lock free at once (see RedisLocker)."""

    def lock(
        self, upload_id: str, *, wait: float, request_release: bool = True
    ) -> AbstractAsyncContextManager[Lock]:
        """Hold the lock of ``upload_id`` for the ``async with`` block.

        Waits up to ``wait`` seconds (asking the holder to let go when
        ``request_release``), then raises :class:`LockTimeout`.
        """
        ...

    def drain(self) -> None:
        """The node is shutting down: interrupt every held lock and every lock taken from
        now on, so running PATCHes keep what they have and answer at once."""
        ...


class Interruptible:
    """The interrupt half of a :class:`Lock`, shared by the lockers: callbacks run once,
    the first time the holder is asked to let go (or loses the lock)."""

    def __init__(self) -> None:
        self._interrupted = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    def on_interrupt(self, callback: Callable[[], None]) -> Callable[[], None]:
        if self._interrupted:
            callback()
            return lambda: None
        self._callbacks.append(callback)

        def unregister() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unregister

    def _interrupt(self) -> None:
        if self._interrupted:
            return
        self._interrupted = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a callback must not stop the locker's loop
                logger.exception("lock interrupt callback failed")

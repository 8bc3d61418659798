"""The storage interface the handler talks to, and the description of an upload.

As in tusd, a store has a small core (create, describe, append) and optional
capabilities, each a Protocol of its own; the handler advertises the tus
extensions whose capabilities the store has (see :func:`extensions_for`).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass
class UploadInfo:
    """What is known about one upload.

    ``id``, ``owner``, ``length`` (None while deferred), ``metadata`` and the
    concatenation fields are fixed at creation. ``offset``, ``updated_at`` and
    ``finished`` are read from storage each time: the offset is the size of the
    stored bytes, ``updated_at`` the time of the last write, ``finished`` whether
    the post-finish hook has completed.
    """

    id: str
    owner: str
    length: int | None
    metadata: dict[str, str] = field(default_factory=dict)
    metadata_header: str = ""
    partial: bool = False
    parts: tuple[str, ...] = ()
    created_at: float = 0.0
    offset: int = 0
    updated_at: float = 0.0
    finished: bool = False
    storage: dict[str, str] = field(default_factory=dict)

    @property
    def deferred(self) -> bool:
        return self.length is None

    @property
    def final(self) -> bool:
        return bool(self.parts)

    @property
    def complete(self) -> bool:
        return self.length is not None and self.offset >= self.length

    def expires_at(self, expiry_seconds: float) -> float | None:
        """When tus forgets this upload: ``expiry_seconds`` after its last write.

        Uploads whose finish hook has run never expire here (the application owns
        them from then on), nor do complete ones whose finish is still to be
        recorded (the next HEAD or the sweep finishes them). Partial uploads always
        may: the application never hears of them, they only feed a final upload.
        """
        if expiry_seconds <= 0 or self.finished or (self.complete and not self.partial):
            return None
        return (self.updated_at or self.created_at) + expiry_seconds

    def expired(self, expiry_seconds: float, now: float) -> bool:
        expires = self.expires_at(expiry_seconds)
        return expires is not None and now >= expires


class StoreError(Exception):
    """Base class of the conditions a store reports to the handler."""


class UploadNotFound(StoreError):
    """The upload does not exist (or vanished while we were working on it)."""


class OffsetMismatch(StoreError):
    """The stored bytes do not end where the writer was told to start."""

    def __init__(self, stored: int) -> None:
        super().__init__(f"stored offset is {stored}")
        self.stored = stored


class UploadBusy(StoreError):
    """Another writer holds the upload's data (a second guard under the Redis lock)."""


class UploadExpired(StoreError):
    """The upload's last write is older than the writer was told to accept."""


def is_storage_full(error: BaseException) -> bool:
    """ENOSPC, EDQUOT or EFBIG: answered 507; the bytes that made it stay, resumable."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class ChunkWriter(Protocol):
    """Appends one request body to an upload, batching and writing off the event loop.

    ``write`` is called for each received chunk and must stay cheap; ``commit``
    waits for outstanding writes, makes the bytes part of the upload and returns
    the new offset. A store may open the upload lazily (the file store does, in the
    thread of its first write): what :meth:`Store.open_writer` checks is then raised
    by ``write``, ``flush`` or ``commit``, and no byte is written when a check fails.
    A staged writer (checksums) keeps the bytes aside until ``commit``; ``discard``
    drops them (an unstaged writer's bytes are on disk
    already and stay). ``digest`` is that of every byte given to ``write`` when
    a hasher was passed. ``close`` is idempotent, synchronous and safe while a
    write is still running in its thread.
    """

    @property
    def received(self) -> int: ...

    @property
    def offset(self) -> int:
        """Where the upload's bytes end, once flushed, committed or discarded."""
        ...

    async def write(self, chunk: bytes) -> None: ...

    async def flush(self) -> None: ...

    def digest(self) -> bytes: ...

    async def commit(self) -> int: ...

    async def discard(self) -> None: ...

    def close(self) -> None: ...


class Store(Protocol):
    """The core every store has: the ``creation`` and core tus features."""

    async def create(self, info: UploadInfo) -> None:
        """Record a new upload with no bytes; raises ``OSError`` when storage is full."""
        ...

    async def get(self, upload_id: str) -> UploadInfo:
        """The upload's description and current offset; raises :class:`UploadNotFound`."""
        ...

    async def open_writer(
        self,
        upload_id: str,
        offset: int,
        *,
        staged: bool = False,
        hasher: Any = None,
        written_since: float | None = None,
    ) -> ChunkWriter:
        """A writer appending at ``offset``. Its checks: :class:`UploadNotFound`,
        :class:`UploadBusy`, :class:`OffsetMismatch` (``offset`` is not the end) and
        :class:`UploadExpired` (last written before ``written_since``)."""
        ...

    async def mark_finished(self, upload_id: str) -> None:
        """Remember that the finish hook completed, so it never runs again."""
        ...

    def data_path(self, upload_id: str) -> Path:
        """Where the upload's bytes are (readers such as the processing worker use it)."""
        ...


@runtime_checkable
class Terminater(Protocol):
    """``termination`` (and, with it, removing expired uploads)."""

    async def remove(self, upload_id: str) -> None: ...

    async def scan_unfinished(self) -> list[UploadInfo]: ...

    async def sweep_temporary(self, older_than: float) -> int: ...


@runtime_checkable
class LengthDeferrer(Protocol):
    """``creation-defer-length``: the length can be declared once, after creation."""

    async def declare_length(self, upload_id: str, length: int) -> None: ...


@runtime_checkable
class Concater(Protocol):
    """``concatenation``: build a final upload from complete partial ones."""

    async def concatenate(self, info: UploadInfo, parts: list[str]) -> None: ...


@runtime_checkable
class UnfinishedConcater(Protocol):
    """``concatenation-unfinished``: a final created (by ``create``, with no length) while
    its parts are still being written, and assembled when the last one completes.

    ``wait_for_part`` records that ``final_id`` waits for ``part_id`` (so the completion
    of a part finds its finals without a scan); ``waiting_finals`` lists them (removing
    the part forgets them). ``assemble`` fills the final with the parts' bytes and sets
    its length; it may run again after a crash and gives the same result.
    """

    async def wait_for_part(self, part_id: str, final_id: str) -> None: ...

    async def waiting_finals(self, part_id: str) -> list[str]: ...

    async def assemble(self, info: UploadInfo, parts: list[str]) -> None: ...


#: Extensions every store gets from the handler and the core interface.
CORE_EXTENSIONS = ("creation", "creation-with-upload", "checksum")


def extensions_for(store: object, *, expiration: bool) -> list[str]:
    """The ``Tus-Extension`` list for ``store``: tusd's composer, in Python."""
    extensions = list(CORE_EXTENSIONS)
    if isinstance(store, LengthDeferrer):
        extensions.append("creation-defer-length")
    if isinstance(store, Terminater):
        extensions.append("termination")
        if expiration:
            extensions.append("expiration")
    if isinstance(store, Concater):
        extensions.append("concatenation")
        if isinstance(store, UnfinishedConcater):
            extensions.append("concatenation-unfinished")
    return extensions

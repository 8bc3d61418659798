"""Uploads on the local disk (or a shared volume), laid out as tusd's filestore.

``<dir>/<id>``         the bytes; its size *is* the offset, so a crash can never
                       claim bytes that are not on disk
``<dir>/<id>.info``    the description, JSON, written once (temp file + rename)
``<dir>/<id>.length``  the length of a deferred upload, declared once (temp + link)
``<dir>/<id>.done``    the finish hook has completed (create-exclusive)
``<dir>/<id>.finals``  ids of unfinished finals waiting for this part, one a line (appended)
``<dir>/.tmp/``        files being built: descriptions, checksummed chunks, concatenations

All file-system work runs in worker threads; the event loop only hands over
batches of about 1 MiB. Names come from random ids only, never from metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread

from .protocol import is_upload_id
from .store import OffsetMismatch, StoreError, UploadBusy, UploadExpired, UploadInfo, UploadNotFound

logger = logging.getLogger("tusd_py.tus")

#: Bytes gathered from the request before one write; large enough that the thread
#: hand-over is rare, small enough to bound memory per upload (two batches at most).
BATCH_SIZE = 1 << 20
_COPY_CHUNK = 8 << 20
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
_FILE_MODE = 0o600
_INFO_VERSION = 1


class FileStore:
    """A :class:`~tusd_py.tus.store.Store` with every optional capability."""

    def __init__(self, directory: Path | str, *, batch_size: int = BATCH_SIZE) -> None:
        self.directory = Path(directory)
        self.tmp_directory = self.directory / ".tmp"
        self.batch_size = batch_size
        self.tmp_directory.mkdir(parents=True, exist_ok=True)

    # -- paths -------------------------------------------------------------------------------

    def data_path(self, upload_id: str) -> Path:
        """``<dir>/<id>``: where the processing worker reads the finished bytes."""
        if not is_upload_id(upload_id):
            raise UploadNotFound(upload_id)
        return self.directory / upload_id

    def _side(self, upload_id: str, suffix: str) -> Path:
        return self.data_path(upload_id).with_name(f"{upload_id}.{suffix}")

    def _temp(self, upload_id: str, suffix: str) -> Path:
        return self.tmp_directory / f"{upload_id}.{secrets.token_hex(8)}.{suffix}"

    # -- core --------------------------------------------------------------------------------

    async def create(self, info: UploadInfo) -> None:
        await anyio.to_thread.run_sync(self._create, info)

    def _create(self, info: UploadInfo) -> None:
        data = self.data_path(info.id)
        fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        os.close(fd)
        try:
            self._write_info(info)
        except BaseException:
            data.unlink(missing_ok=True)
            raise

    def _write_info(self, info: UploadInfo) -> None:
        document = {
            "version": _INFO_VERSION,
            "id": info.id,
            "owner": info.owner,
            "length": info.length,
            "metadata": info.metadata,
            "metadata_header": info.metadata_header,
            "partial": info.partial,
            "parts": list(info.parts),
            "created_at": info.created_at,
        }
        _atomic_write(self._temp(info.id, "info"), self._side(info.id, "info"), document)

    async def get(self, upload_id: str) -> UploadInfo:
        return await anyio.to_thread.run_sync(self._get, upload_id)

    def _get(self, upload_id: str) -> UploadInfo:
        data = self.data_path(upload_id)
        try:
            document = json.loads(self._side(upload_id, "info").read_bytes())
            stat = data.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(upload_id) from None
        except (ValueError, KeyError, TypeError):  # torn or foreign: absent, never a crash
            logger.warning("unreadable description for upload %s", upload_id)
            raise UploadNotFound(upload_id) from None
        try:
            owner = str(document["owner"])
        except (KeyError, TypeError):
            raise UploadNotFound(upload_id) from None
        length = document.get("length")
        if length is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                length = int(self._side(upload_id, "length").read_text())
        return UploadInfo(
            id=upload_id,
            owner=owner,
            length=length,
            metadata=dict(document.get("metadata") or {}),
            metadata_header=str(document.get("metadata_header") or ""),
            partial=bool(document.get("partial")),
            parts=tuple(document.get("parts") or ()),
            created_at=float(document.get("created_at") or 0.0),
            offset=stat.st_size,
            updated_at=stat.st_mtime,
            finished=self._side(upload_id, "done").exists(),
            storage={"Type": "filestore", "Path": str(data)},
        )

    async def open_writer(
        self,
        upload_id: str,
        offset: int,
        *,
        staged: bool = False,
        hasher: Any = None,
        written_since: float | None = None,
    ) -> FileChunkWriter:
        """A writer that opens the data in the thread of its first write (one hop less per
        PATCH); what opening checks is reported by ``write``, ``flush`` or ``commit``."""
        opener = functools.partial(self._open_data, upload_id, offset, staged, written_since)
        return FileChunkWriter(opener, offset, hasher, self.batch_size)

    def _open_data(
        self, upload_id: str, offset: int, staged: bool, written_since: float | None
    ) -> tuple[int, int | None, Path | None]:
        """In a worker thread: (data fd, stage fd, stage path), or the store error that says
        why this upload cannot take bytes at ``offset`` now."""
        try:
            fd = os.open(self.data_path(upload_id), os.O_WRONLY)
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        try:
            # A second guard under the Redis lock: one writer per data file, also
            # across nodes on a shared volume (NFS maps flock to its own locks).
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UploadBusy(upload_id) from None
        stage_fd = None
        stage_path = None
        try:
            stat = os.fstat(fd)
            if stat.st_size != offset:
                raise OffsetMismatch(stat.st_size)
            if written_since is not None and stat.st_mtime < written_since:
                raise UploadExpired(upload_id)
            if staged:
                stage_path = self._temp(upload_id, "chunk")
                stage_fd = os.open(stage_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except BaseException:
            os.close(fd)
            raise
        return fd, stage_fd, stage_path

    async def mark_finished(self, upload_id: str) -> None:
        await anyio.to_thread.run_sync(self._mark_finished, upload_id)

    def _mark_finished(self, upload_id: str) -> None:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self._side(upload_id, "done"), os.O_CREAT | os.O_EXCL, _FILE_MODE))

    # -- capabilities ------------------------------------------------------------------------

    async def declare_length(self, upload_id: str, length: int) -> None:
        """Set a deferred length once; a second declaration is ignored (first one wins)."""
        await anyio.to_thread.run_sync(self._declare_length, upload_id, length)

    def _declare_length(self, upload_id: str, length: int) -> None:
        temp = self._temp(upload_id, "length")
        temp.write_text(str(length))
        try:
            os.link(temp, self._side(upload_id, "length"))
        except FileExistsError:
            pass
        finally:
            temp.unlink(missing_ok=True)

    async def concatenate(self, info: UploadInfo, parts: list[str]) -> None:
        """Create ``info`` (a final upload) whose bytes are the parts' bytes, in order."""
        await anyio.to_thread.run_sync(self._concatenate, info, parts)

    def _concatenate(self, info: UploadInfo, parts: list[str]) -> None:
        data = self.data_path(info.id)
        temp = self._copy_parts(info, parts)
        try:
            os.link(temp, data)  # exclusive: never replaces an existing upload
        finally:
            temp.unlink(missing_ok=True)
        try:
            self._write_info(info)
        except BaseException:
            data.unlink(missing_ok=True)
            raise

    async def assemble(self, info: UploadInfo, parts: list[str]) -> None:
        """Fill the (empty, deferred) final ``info`` with its parts' bytes, then declare its
        length: a crash in between leaves a final without length, assembled again later."""
        await anyio.to_thread.run_sync(self._assemble, info, parts)

    def _assemble(self, info: UploadInfo, parts: list[str]) -> None:
        data = self.data_path(info.id)
        if not data.exists():
            raise UploadNotFound(info.id)
        temp = self._copy_parts(info, parts)
        try:
            size = temp.stat().st_size
            os.replace(temp, data)
        finally:
            temp.unlink(missing_ok=True)
        self._declare_length(info.id, size)

    async def wait_for_part(self, part_id: str, final_id: str) -> None:
        await anyio.to_thread.run_sync(self._wait_for_part, part_id, final_id)

    def _wait_for_part(self, part_id: str, final_id: str) -> None:
        if not is_upload_id(final_id):
            raise ValueError(final_id)
        # One short O_APPEND write per line: concurrent finals never interleave.
        fd = os.open(self._side(part_id, "finals"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, _FILE_MODE)
        try:
            os.write(fd, f"{final_id}\n".encode())
        finally:
            os.close(fd)

    async def waiting_finals(self, part_id: str) -> list[str]:
        return await anyio.to_thread.run_sync(self._waiting_finals, part_id)

    def _waiting_finals(self, part_id: str) -> list[str]:
        try:
            lines = self._side(part_id, "finals").read_text().split()
        except FileNotFoundError:
            return []
        return [line for line in dict.fromkeys(lines) if is_upload_id(line)]

    def _copy_parts(self, info: UploadInfo, parts: list[str]) -> Path:
        """The parts' bytes, in order, in a new temporary file (the caller moves it)."""
        temp = self._temp(info.id, "concat")
        try:
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            try:
                position = 0
                for part in parts:
                    src = os.open(self.data_path(part), os.O_RDONLY)
                    try:
                        size = os.fstat(src).st_size
                        _copy(src, 0, out, position, size)
                        position += size
                    except _Partial as partial:
                        raise partial.error from None
                    finally:
                        os.close(src)
            finally:
                os.close(out)
            if info.length is not None and position != info.length:
                raise UploadNotFound("a part changed while it was being concatenated")
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp

    async def remove(self, upload_id: str) -> None:
        await anyio.to_thread.run_sync(self._remove, upload_id)

    def _remove(self, upload_id: str) -> None:
        # The description first: once it is gone the upload is gone for every reader.
        for path in (
            self._side(upload_id, "info"),
            self.data_path(upload_id),
            self._side(upload_id, "length"),
            self._side(upload_id, "done"),
            self._side(upload_id, "finals"),
        ):
            path.unlink(missing_ok=True)

    async def scan_unfinished(self) -> list[UploadInfo]:
        """Every readable upload whose finish hook has not completed (those may expire)."""
        return await anyio.to_thread.run_sync(self._scan_unfinished)

    def _scan_unfinished(self) -> list[UploadInfo]:
        with os.scandir(self.directory) as entries:
            names = {entry.name for entry in entries}
        found = []
        for name in names:
            upload_id, _, suffix = name.partition(".")
            if suffix != "info" or not is_upload_id(upload_id) or f"{upload_id}.done" in names:
                continue
            with contextlib.suppress(UploadNotFound, OSError):
                found.append(self._get(upload_id))
        return found

    async def sweep_temporary(self, older_than: float) -> int:
        """Remove leftovers of crashed requests last touched before ``older_than`` (epoch s):
        temporary files, and pieces of uploads whose data or description is missing."""
        return await anyio.to_thread.run_sync(self._sweep_temporary, older_than)

    def _sweep_temporary(self, older_than: float) -> int:
        removed = 0
        with os.scandir(self.tmp_directory) as entries:
            for entry in entries:
                removed += _unlink_if_older(entry, older_than)
        with os.scandir(self.directory) as entries:
            names = {entry.name: entry for entry in entries if entry.is_file()}
        for name, entry in names.items():
            upload_id, _, suffix = name.partition(".")
            if not is_upload_id(upload_id):
                continue
            orphan_data = suffix == "" and f"{upload_id}.info" not in names
            orphan_side = suffix in ("info", "length", "done", "finals") and upload_id not in names
            if orphan_data or orphan_side:
                removed += _unlink_if_older(entry, older_than)
        return removed


class FileChunkWriter:
    """Appends one request body at a known position, batching writes into a thread.

    While one batch is written in a worker thread the next is gathered on the
    event loop, so receiving and writing overlap. The data is opened (and checked)
    in the thread of the first batch; a failed check writes nothing and is raised
    by the next ``write``, ``flush`` or ``commit``. File descriptors are closed only
    once no thread uses them, even if the request is cancelled mid-write.
    """

    def __init__(
        self,
        opener: Callable[[], tuple[int, int | None, Path | None]],
        offset: int,
        hasher: Any,
        batch_size: int,
    ) -> None:
        self._opener: Callable[[], tuple[int, int | None, Path | None]] | None = opener
        self._fd: int | None = None
        self._stage_fd: int | None = None
        self._stage_path: Path | None = None
        self._hasher = hasher
        self._batch_size = batch_size
        self._data_end = offset  # where the upload's bytes end (advanced by the thread)
        self._stage_end = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._received = 0
        self._pending: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._closed = False

    @property
    def received(self) -> int:
        return self._received

    async def write(self, chunk: bytes) -> None:
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        self._received += len(chunk)
        if self._buffered >= self._batch_size:
            await self._submit()

    async def _submit(self) -> None:
        if self._pending is not None:
            # Shielded: a cancelled request must not forget a write still running.
            await asyncio.shield(self._pending)
            self._pending = None
        if self._error is not None:
            raise self._error
        if not self._buffer:
            return
        batch, self._buffer, self._buffered = self._buffer, [], 0
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, self._write_batch, batch)

    def _open(self) -> bool:
        """In a worker thread, once: open and check the data; False (and the error kept) if
        it cannot be written."""
        if self._opener is not None:
            opener, self._opener = self._opener, None
            try:
                self._fd, self._stage_fd, self._stage_path = opener()
            except (StoreError, OSError) as error:
                self._error = error
        return self._error is None

    def _write_batch(self, batch: list[bytes]) -> None:
        """Runs in a worker thread: hash and write one batch; remember the first error."""
        if not self._open():
            return
        assert self._fd is not None
        if self._hasher is not None:
            for chunk in batch:
                self._hasher.update(chunk)
        try:
            if self._stage_fd is not None:
                self._stage_end = _pwritev_all(self._stage_fd, batch, self._stage_end)
            else:
                self._data_end = _pwritev_all(self._fd, batch, self._data_end)
        except _Partial as partial:
            if self._stage_fd is not None:
                self._stage_end = partial.position
            else:
                self._data_end = partial.position
            self._error = partial.error

    async def flush(self) -> None:
        """Write everything received so far; raises the first error (e.g. ENOSPC, or a
        store error of the open: :class:`OffsetMismatch`, :class:`UploadNotFound`...)."""
        await self._submit()
        if self._pending is not None:
            await asyncio.shield(self._pending)
            self._pending = None
        elif self._opener is not None and not self._closed:  # no byte came: still check
            await anyio.to_thread.run_sync(self._open)
        if self._error is not None:
            raise self._error

    def digest(self) -> bytes:
        return self._hasher.digest() if self._hasher is not None else b""

    async def commit(self) -> int:
        """Make the received bytes part of the upload; returns the new offset."""
        try:
            await self.flush()
            if self._stage_fd is not None and self._stage_end:
                await anyio.to_thread.run_sync(self._append_stage)
            return self._data_end
        finally:
            self.close()

    def _append_stage(self) -> None:
        assert self._stage_fd is not None and self._fd is not None
        try:
            _copy(self._stage_fd, 0, self._fd, self._data_end, self._stage_end)
        except _Partial as partial:
            self._data_end = partial.position  # verified bytes that made it stay
            raise partial.error from None
        self._data_end += self._stage_end

    async def discard(self) -> None:
        """Drop staged bytes (unstaged ones are already part of the upload)."""
        with contextlib.suppress(OSError):
            await self.flush()
        self.close()

    @property
    def offset(self) -> int:
        """Where the upload's bytes end now (valid once flushed)."""
        return self._data_end

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pending = self._pending
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _: self._close_files())
        else:
            self._close_files()

    def _close_files(self) -> None:
        self._opener = None  # a writer closed before its first write never opens
        for fd in (self._stage_fd, self._fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._stage_path is not None:
            self._stage_path.unlink(missing_ok=True)


class _Partial(Exception):
    """A write stopped part-way: ``position`` is where the bytes that made it end."""

    def __init__(self, position: int, error: OSError) -> None:
        super().__init__(str(error))
        self.position = position
        self.error = error


def _pwritev_all(fd: int, buffers: list[bytes], position: int) -> int:
    """Write ``buffers`` at ``position`` with one system call (no joining copy) in the
    usual case; a short write (an error on its way) finishes buffer by buffer."""
    total = sum(len(buffer) for buffer in buffers)
    try:
        written = os.pwritev(fd, buffers[:_IOV_MAX], position)
    except OSError as error:
        raise _Partial(position, error) from None
    if written == total:
        return position + total
    end = position + written
    for buffer in buffers:
        if written >= len(buffer):
            written -= len(buffer)
            continue
        end = _pwrite_all(fd, memoryview(buffer)[written:], end)
        written = 0
    return end


def _pwrite_all(fd: int, data: bytes | memoryview, position: int) -> int:
    view = memoryview(data)
    try:
        while view:
            written = os.pwrite(fd, view, position)
            position += written
            view = view[written:]
    except OSError as error:
        raise _Partial(position, error) from None
    return position


def _copy(src: int, src_pos: int, dst: int, dst_pos: int, count: int) -> None:
    """Copy ``count`` bytes between files, in the kernel when it can."""
    end = src_pos + count
    use_kernel = hasattr(os, "copy_file_range")
    while src_pos < end:
        size = min(_COPY_CHUNK, end - src_pos)
        try:
            if use_kernel:
                try:
                    copied = os.copy_file_range(src, dst, size, src_pos, dst_pos)
                except OSError as error:
                    if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    use_kernel = False
                    continue
                if copied == 0:
                    raise OSError(errno.EIO, "source ended early")
            else:
                block = os.pread(src, size, src_pos)
                if not block:
                    raise OSError(errno.EIO, "source ended early")
                copied = _pwrite_all(dst, block, dst_pos) - dst_pos
        except _Partial as partial:
            raise partial from None
        except OSError as error:
            raise _Partial(dst_pos, error) from None
        src_pos += copied
        dst_pos += copied


def _atomic_write(temp: Path, target: Path, document: dict[str, Any]) -> None:
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(document, separators=(",", ":")).encode())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _unlink_if_older(entry: os.DirEntry[str], older_than: float) -> int:
    try:
        if entry.stat(follow_symlinks=False).st_mtime < older_than:
            os.unlink(entry.path)
            return 1
    except FileNotFoundError:
        pass
    return 0

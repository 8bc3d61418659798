"""The tus 1.0.0 protocol handler (tusd's pkg/handler, for Starlette).

``TusHandler(...).routes`` serves ``/files``, ``/files/`` (creation, OPTIONS)
and ``/files/{upload_id}`` (HEAD, PATCH, DELETE, OPTIONS). Every request on an
existing upload first checks ownership without the lock (another owner's upload
answers 404 and is never touched, not even interrupted), then takes the
upload's lock and re-reads it. Bodies are streamed into the store's writer;
the lock's interrupt cancels the body read when another request asks for the
upload, and the bytes received so far are kept.

The handler sees interfaces only (store, locker, quota, hooks); refusals come
from :mod:`~tusd_py.tus.errors`, making room under the caps from
:mod:`~tusd_py.tus.admission`, the expiry sweep from :mod:`~tusd_py.tus.sweep`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import errors
from .admission import Admission
from .errors import OFFSET_CONTENT_TYPE, TUS_VERSION, BackendUnavailable, TusError
from .hooks import Hooks
from .locker import Lock, Locker, LockTimeout
from .protocol import (
    Checksum,
    Concat,
    checksum_algorithms_header,
    http_date,
    is_upload_id,
    parse_checksum,
    parse_concat,
    parse_metadata,
    parse_non_negative,
)
from .quota import Quota, StorageQuota
from .recent import RecentUploads
from .store import (
    ChunkWriter,
    Concater,
    LengthDeferrer,
    OffsetMismatch,
    Store,
    Terminater,
    UnfinishedConcater,
    UploadBusy,
    UploadExpired,
    UploadInfo,
    UploadNotFound,
    extensions_for,
    is_storage_full,
)
from .sweep import sweep_expired

logger = logging.getLogger("tusd_py.tus")

#: Methods the routes accept; the handler answers 405 itself (with tus headers) for the rest.
_ROUTE_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_COLLECTION_METHODS = ("POST", "OPTIONS")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


class TusHandler:
    """tus 1.0.0 core + creation, creation-with-upload, creation-defer-length,
    termination, checksum, expiration, concatenation and concatenation-unfinished
    (as far as ``store`` can).

    ``max_size``: Tus-Max-Size, the largest upload. ``expiry_seconds``: unfinished
    uploads expire this long after their last write (0 disables). ``quota``: the
    per-owner caps (None: no caps). ``storage``: the per-owner storage quota over
    everything kept (None: none). ``idle_seconds``: an unfinished upload not
    written for this long may be evicted to make room under the caps.
    ``lock_wait``: how long a request waits for an upload's lock before answering
    423. ``trust_proxy``: build URLs from X-Forwarded-Host/-Proto and Forwarded.
    """

    def __init__(
        self,
        store: Store,
        locker: Locker,
        hooks: Hooks,
        *,
        max_size: int,
        expiry_seconds: float,
        trust_proxy: bool = False,
        quota: Quota | None = None,
        idle_seconds: float = 60.0,
        storage: StorageQuota | None = None,
        lock_wait: float = 3.0,
        base_path: str = "/files",
    ) -> None:
        self.store = store
        self.locker = locker
        self.hooks = hooks
        self.max_size = max_size
        self.expiry_seconds = expiry_seconds
        self.trust_proxy = trust_proxy
        self.quota = quota
        self.storage = storage
        self.admission = (
            None
            if quota is None and storage is None
            else Admission(
                quota,
                store,
                self._evict,
                expiry_seconds=expiry_seconds,
                idle_seconds=idle_seconds,
                storage=storage,
            )
        )
        self.lock_wait = lock_wait
        self._recent = RecentUploads()
        self.base_path = base_path.rstrip("/")
        self.extensions = extensions_for(store, expiration=expiry_seconds > 0)
        terminates = isinstance(store, Terminater)
        self._member_methods = ("HEAD", "PATCH", *(("DELETE",) if terminates else ()), "OPTIONS")
        self.routes: list[BaseRoute] = [
            # No Starlette ``max_body_size`` here (and none may be set app-wide): the tus
            # routes police their own sizes (Tus-Max-Size, Upload-Length) and answer with
            # tus headers, and its wrapper would sit on every chunk a PATCH receives.
            Route(path, endpoint, methods=_ROUTE_METHODS, name=name)
            for path, endpoint, name in (
                (self.base_path, self.collection, "tus_collection"),
                (self.base_path + "/", self.collection, "tus_collection_slash"),
                (self.base_path + "/{upload_id}", self.member, "tus_upload"),
            )
        ]

    # -- entry points ------------------------------------------------------------------------

    async def collection(self, request: Request) -> Response:
        """``/files``: POST (creation) and OPTIONS."""
        method = _method(request)
        if method == "OPTIONS":
            return self._options()
        return await self._guarded(request, method, None)

    async def member(self, request: Request) -> Response:
        """``/files/{upload_id}``: HEAD, PATCH, DELETE and OPTIONS."""
        method = _method(request)
        if method == "OPTIONS":
            return self._options()
        return await self._guarded(request, method, str(request.path_params["upload_id"]))

    async def _guarded(self, request: Request, method: str, upload_id: str | None) -> Response:
        try:
            # 405 comes before 412: a method we never serve is wrong whatever the version.
            allowed = _COLLECTION_METHODS if upload_id is None else self._member_methods
            if method not in allowed:
                raise errors.method_not_allowed(allowed)
            if request.headers.get("tus-resumable") != TUS_VERSION:
                raise errors.unsupported_version()
            if upload_id is None:
                return await self._post(request)
            if method == "HEAD":
                return await self._head(request, upload_id)
            if method == "PATCH":
                return await self._patch(request, upload_id)
            return await self._delete(request, upload_id)
        except TusError as error:
            return self._error(error)
        except LockTimeout:
            return self._error(errors.locked())
        except BackendUnavailable as outage:
            # 423 + Retry-After, never 5xx: see errors.backend_unavailable.
            logger.warning("backend unavailable on %s %s: %s", method, request.url.path, outage)
            return self._error(errors.backend_unavailable())
        except Exception:
            logger.exception("unhandled error on %s %s", method, request.url.path)
            return self._error(errors.internal_error())

    # -- OPTIONS -----------------------------------------------------------------------------

    def _options(self) -> Response:
        headers = {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": ",".join(self.extensions),
            "Tus-Max-Size": str(self.max_size),
            "Tus-Checksum-Algorithm": checksum_algorithms_header(),
        }
        # 200, not 204: some browsers reject a 204 answer to a preflight (as tusd does).
        return Response(status_code=200, headers=headers)

    # -- POST (creation) ---------------------------------------------------------------------

    async def _post(self, request: Request) -> Response:
        owner = await self._authenticate(request)
        headers = request.headers
        concat = parse_concat(headers["upload-concat"]) if "upload-concat" in headers else None
        if concat is not None and not isinstance(self.store, Concater):
            raise errors.invalid_concat("concatenation is not supported")
        metadata_header = headers.get("upload-metadata", "")
        metadata = parse_metadata(metadata_header)
        length_header = headers.get("upload-length")
        defer_header = headers.get("upload-defer-length")
        has_body = _has_body(request)
        if concat is not None and concat.final:
            if length_header is not None or defer_header is not None:
                raise errors.invalid_header("a final upload takes no Upload-Length or Upload-Defer-Length")
            if has_body:
                raise errors.final_upload_has_body()
            return await self._post_final(request, owner, concat, metadata, metadata_header)
        # A body must be declared as tus bytes: a form post never becomes an upload.
        # A bodiless POST is never refused for its Content-Type.
        if has_body and _media_type(headers.get("content-type")) != OFFSET_CONTENT_TYPE:
            raise errors.unsupported_media_type()
        length = self._creation_length(length_header, defer_header)
        checksum = (
            parse_checksum(headers["upload-checksum"]) if has_body and "upload-checksum" in headers else None
        )
        content_length = _content_length(request)
        limit = self.max_size if length is None else length
        if has_body and content_length is not None and content_length > limit:
            raise errors.too_large_body()

        info = UploadInfo(
            id=secrets.token_hex(16),
            owner=owner,
            length=length,
            metadata=metadata,
            metadata_header=metadata_header,
            partial=concat is not None and concat.partial,
            created_at=time.time(),
        )
        if self.hooks.pre_create is not None:
            await self.hooks.pre_create(request, info)
        counted = length != 0
        await self._create(info, self.max_size if length is None else length, counted=counted)
        location = self._upload_url(request, info.id)
        too_large = False
        if not has_body and length != 0:
            # Nothing to write and nothing to finish; no one else knows the id yet (nor is
            # it idle enough to evict): no lock, two Redis round trips fewer per upload.
            info = await self.store.get(info.id)
        else:
            async with self._lock(info.id) as lock:
                info = await self.store.get(info.id)
                try:
                    info, too_large = await self._write_and_finish(request, info, lock, checksum, has_body)
                except TusError as error:  # the upload exists: tell the client where it is
                    error.headers.setdefault("Location", location)
                    raise
        self._recent.remember(info)
        if too_large:
            raise errors.too_large_body(info.offset, location)
        response_headers = {"Location": location, "Upload-Offset": str(info.offset)}
        self._add_expires(response_headers, info)
        return self._response(201, response_headers)

    def _creation_length(self, length_header: str | None, defer_header: str | None) -> int | None:
        if length_header is not None and defer_header is not None:
            raise errors.invalid_header("send Upload-Length or Upload-Defer-Length, not both")
        if length_header is not None:
            length = parse_non_negative(length_header, "Upload-Length")
            if length > self.max_size:
                raise errors.too_large_upload(self.max_size)
            return length
        if defer_header is not None:
            if defer_header.strip() != "1":
                raise errors.invalid_header("Upload-Defer-Length must be 1")
            if not isinstance(self.store, LengthDeferrer):
                raise errors.invalid_header("deferred lengths are not supported")
            return None
        raise errors.invalid_header("Upload-Length or Upload-Defer-Length: 1 is required")

    async def _create(self, info: UploadInfo, nbytes: int, *, counted: bool = True) -> None:
        """Reserve quota (making room if needed), then create the upload in the store."""
        if counted and self.admission is not None:
            await self.admission.reserve(info, nbytes)
        try:
            await self.store.create(info)
        except OSError as error:
            if counted:
                await self._release(info.owner, info.id)
            if is_storage_full(error):
                raise errors.insufficient_storage() from None
            raise

    async def _post_final(
        self,
        request: Request,
        owner: str,
        concat: Concat,
        metadata: dict[str, str],
        metadata_header: str,
    ) -> Response:
        assert isinstance(self.store, Concater)
        # Every part is checked before any lock is taken: a foreign part answers exactly
        # as a missing one does, at once, and never makes its owner's request wait.
        parts = {part_id: await self._part(part_id, owner) for part_id in concat.parts}
        info = UploadInfo(
            id=secrets.token_hex(16),
            owner=owner,
            length=None,
            metadata=metadata,
            metadata_header=metadata_header,
            parts=concat.parts,
            created_at=time.time(),
        )
        if not all(part.complete for part in parts.values()):
            if "concatenation-unfinished" not in self.extensions:
                raise errors.invalid_concat("every partial upload must be complete")
            return await self._post_unfinished_final(request, info, parts)
        return await self._post_complete_final(request, info, parts)

    async def _post_complete_final(
        self, request: Request, info: UploadInfo, parts: dict[str, UploadInfo]
    ) -> Response:
        """``concatenation``: every part is complete; the final is built and finished now."""
        assert isinstance(self.store, Concater)
        owner = info.owner
        async with contextlib.AsyncExitStack() as stack:
            # Parts are locked (in a fixed order: no deadlock) so none changes or
            # vanishes while it is copied; complete parts are never written anyway.
            for part_id in sorted(parts):
                await stack.enter_async_context(
                    self.locker.lock(part_id, wait=self.lock_wait, request_release=False)
                )
                parts[part_id] = await self._part(part_id, owner)
            info.length = sum(parts[part_id].offset for part_id in info.parts)
            if info.length > self.max_size:
                raise errors.too_large_upload(self.max_size)
            if self.hooks.pre_create is not None:
                await self.hooks.pre_create(request, info)
            # A final reserves its own bytes like any upload (released once it is finished).
            if info.length and self.admission is not None:
                await self.admission.reserve(info, info.length)
            try:
                await self.store.concatenate(info, list(info.parts))
            except BaseException as error:
                await self._release(owner, info.id)
                if isinstance(error, UploadNotFound):
                    raise errors.invalid_concat("a partial upload changed; retry") from None
                if is_storage_full(error):
                    raise errors.insufficient_storage() from None
                raise
        async with self._lock(info.id) as lock:
            info = await self.store.get(info.id)
            await self._completed(info, lock)
        headers = {"Location": self._upload_url(request, info.id), "Upload-Offset": str(info.offset)}
        return self._response(201, headers)

    async def _post_unfinished_final(
        self, request: Request, info: UploadInfo, parts: dict[str, UploadInfo]
    ) -> Response:
        """``concatenation-unfinished``: the final exists now, its bytes once every part is
        complete (the PATCH that completes the last part assembles it)."""
        lengths = [part.length for part in parts.values()]
        known = sum(length for length in lengths if length is not None)
        if known > self.max_size:
            raise errors.too_large_upload(self.max_size)
        if self.hooks.pre_create is not None:
            await self.hooks.pre_create(request, info)
        reserved = known if None not in lengths else self.max_size
        await self._create(info, min(reserved, self.max_size))
        assert isinstance(self.store, UnfinishedConcater)
        for part_id in info.parts:
            await self.store.wait_for_part(part_id, info.id)
        # A part may have completed while we created the final: assemble it now then.
        async with self._lock(info.id) as lock:
            info = await self._assemble(await self.store.get(info.id), lock)
        headers = {"Location": self._upload_url(request, info.id)}
        if info.complete:
            headers["Upload-Offset"] = str(info.offset)
        return self._response(201, headers)

    async def _part(self, part_id: str, owner: str) -> UploadInfo:
        """A part of a final upload: the caller's, partial and not expired."""
        # One answer, without the id, for missing, foreign, complete-plain and expired parts.
        refused = errors.invalid_concat("Upload-Concat names an upload that is not a partial upload of yours")
        try:
            part = await self.store.get(part_id)
        except UploadNotFound:
            raise refused from None
        if part.owner != owner or not part.partial or part.expired(self.expiry_seconds, time.time()):
            raise refused
        return part

    # -- concatenation-unfinished ------------------------------------------------------------

    async def _parts_of(self, final: UploadInfo) -> list[UploadInfo] | None:
        """The final's parts as they are now; None if one is gone or not its owner's."""
        parts = []
        for part_id in final.parts:
            try:
                part = await self.store.get(part_id)
            except UploadNotFound:
                return None
            if part.owner != final.owner:
                return None
            parts.append(part)
        return parts

    async def _assemble(self, final: UploadInfo, lock: Lock) -> UploadInfo:
        """Under the final's lock: if every part is complete, build the final's bytes and
        finish it (the hook runs once: ``_completed`` is idempotent). Else leave it."""
        if not final.final or final.complete:
            return final
        parts = await self._parts_of(final)
        if parts is None or not all(part.complete for part in parts):
            return final
        assert isinstance(self.store, UnfinishedConcater)
        try:
            await self.store.assemble(final, list(final.parts))
        except (UploadNotFound, FileNotFoundError):  # a part went meanwhile: the final goes too
            return final
        final = await self.store.get(final.id)
        await self._completed(final, lock)
        return final

    async def _finals_of(self, part: UploadInfo) -> list[UploadInfo]:
        """The owner's unfinished finals that wait for ``part``."""
        if not part.partial or not isinstance(self.store, UnfinishedConcater):
            return []
        finals = []
        for final_id in await self.store.waiting_finals(part.id):
            with contextlib.suppress(UploadNotFound):
                final = await self.store.get(final_id)
                if (
                    final.final
                    and not final.complete
                    and final.owner == part.owner
                    and part.id in final.parts
                ):
                    finals.append(final)
        return finals

    async def _assemble_finals_of(self, part: UploadInfo) -> None:
        for final in await self._finals_of(part):
            try:
                async with self.locker.lock(final.id, wait=self.lock_wait, request_release=False) as lock:
                    with contextlib.suppress(UploadNotFound):
                        await self._assemble(await self.store.get(final.id), lock)
            except LockTimeout:  # its holder (a HEAD) assembles it
                continue

    # -- HEAD --------------------------------------------------------------------------------

    async def _head(self, request: Request, upload_id: str) -> Response:
        owner = await self._authenticate(request)
        await self._visible(upload_id, owner)
        async with self._lock(upload_id) as lock:
            info = await self._visible(upload_id, owner)
            if info.complete:
                await self._completed(info, lock)
            elif info.final:
                info = await self._assemble(info, lock)
        headers = {"Cache-Control": "no-store"}
        length = info.length
        if info.final and not info.complete:
            # An unfinished final has no offset yet (the spec allows leaving it out);
            # its length is known once every part's is.
            parts = await self._parts_of(info) or []
            lengths = [part.length for part in parts]
            length = None if None in lengths or not parts else sum(lengths)  # type: ignore[arg-type]
        else:
            headers["Upload-Offset"] = str(info.offset)
        if length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(length)
        if info.metadata_header:
            headers["Upload-Metadata"] = info.metadata_header
        if info.partial:
            headers["Upload-Concat"] = "partial"
        elif info.final:
            urls = " ".join(self._upload_url(request, part) for part in info.parts)
            headers["Upload-Concat"] = f"final;{urls}"
        self._add_expires(headers, info)
        return self._response(200, headers)

    # -- PATCH -------------------------------------------------------------------------------

    async def _patch(self, request: Request, upload_id: str) -> Response:
        owner = await self._authenticate(request)
        headers = request.headers
        if _media_type(headers.get("content-type")) != OFFSET_CONTENT_TYPE:
            raise errors.unsupported_media_type()
        if "upload-offset" not in headers:
            raise errors.invalid_header("Upload-Offset is required")
        offset = parse_non_negative(headers["upload-offset"], "Upload-Offset")
        checksum = parse_checksum(headers["upload-checksum"]) if "upload-checksum" in headers else None
        declared = None
        if "upload-length" in headers:
            declared = parse_non_negative(headers["upload-length"], "Upload-Length")

        content_length = _content_length(request)
        seen = self._recent.get(upload_id)
        if (
            seen is None
            or seen.owner != owner
            or not _writer_checks_enough(seen, offset, content_length)
            or seen.expired(self.expiry_seconds, time.time())
        ):
            seen = await self._visible(upload_id, owner)
        async with self._lock(upload_id) as lock:
            if _writer_checks_enough(seen, offset, content_length):
                info = seen
            else:
                info = await self._visible(upload_id, owner)
            if info.final:
                raise errors.final_upload_not_writable()
            if offset != info.offset:
                raise errors.offset_mismatch(offset, info.offset)
            if declared is not None:
                info = await self._declare_length(info, declared)
            try:
                info, too_large = await self._write_and_finish(request, info, lock, checksum, True)
            finally:
                self._recent.forget(upload_id)  # remembered again below if it went well
        self._recent.remember(info)
        if too_large:
            raise errors.too_large_body(info.offset)
        response_headers = {"Upload-Offset": str(info.offset)}
        self._add_expires(response_headers, info)
        return self._response(204, response_headers)

    async def _declare_length(self, info: UploadInfo, declared: int) -> UploadInfo:
        if not info.deferred:
            if declared != info.length:
                raise errors.invalid_header("Upload-Length cannot be changed")
            return info
        if declared < info.offset:
            raise errors.invalid_header("Upload-Length is below the upload's offset")
        if declared > self.max_size:
            raise errors.too_large_upload(self.max_size)
        assert isinstance(self.store, LengthDeferrer)
        await self.store.declare_length(info.id, declared)
        if self.quota is not None:
            await self.quota.update(info.owner, info.id, declared)
        if self.storage is not None:
            await self.storage.resize(info, declared)
        return await self.store.get(info.id)

    # -- the write path shared by POST (creation-with-upload) and PATCH ---------------------

    async def _write_and_finish(
        self,
        request: Request,
        info: UploadInfo,
        lock: Lock,
        checksum: Checksum | None,
        with_body: bool,
    ) -> tuple[UploadInfo, bool]:
        """Under the upload's lock: stream the body (if any) into the upload, then finish it
        if it is complete. Returns the upload as it is now and whether the body went past its
        length (the bytes within it are kept; the caller answers 413 after the lock)."""
        limit = self.max_size if info.length is None else info.length
        content_length = _content_length(request)
        if content_length is not None and info.offset + content_length > limit:
            raise errors.too_large_body()
        too_large = False
        if with_body and content_length != 0:
            info, too_large = await self._receive(request, info, lock, checksum, limit)
        if info.complete:
            await self._completed(info, lock)
        return info, too_large

    async def _receive(
        self,
        request: Request,
        info: UploadInfo,
        lock: Lock,
        checksum: Checksum | None,
        limit: int,
    ) -> tuple[UploadInfo, bool]:
        """Stream the request body into the upload; return it re-read, and whether the
        body went past ``limit`` (the bytes within it are kept).

        The offset comes from the writer (the bytes it appended), not from a re-read.
        Stops early, keeping what arrived, when the client goes away or another
        request asks for the lock. A checksummed body is staged and appended only
        once verified, so an unverified byte is never part of the upload.
        """
        since = None if self.expiry_seconds <= 0 else time.time() - self.expiry_seconds
        writer = await self.store.open_writer(
            info.id,
            info.offset,
            staged=checksum is not None,
            hasher=checksum.new_hasher() if checksum is not None else None,
            written_since=since,  # a remembered description cannot see a file time set back
        )
        try:
            too_large, cut_short = await self._read_body(request, lock, writer, limit - info.offset)
            if checksum is not None and (cut_short or too_large):
                await writer.discard()  # an incomplete chunk cannot be verified
            else:
                await writer.flush()
                if checksum is not None and writer.digest() != checksum.digest:
                    await writer.discard()
                    raise errors.checksum_mismatch(checksum.algorithm)
                await writer.commit()
        except OffsetMismatch as mismatch:
            raise errors.offset_mismatch(info.offset, mismatch.stored) from None
        except UploadBusy:
            raise LockTimeout(info.id) from None
        except UploadNotFound:
            raise errors.not_found() from None
        except UploadExpired:
            raise errors.expired() from None
        except OSError as error:
            if not is_storage_full(error):
                raise
            logger.warning("storage full while writing upload %s: %s", info.id, error)
            stored = await self.store.get(info.id)
            raise errors.insufficient_storage(stored.offset) from None
        finally:
            writer.close()
        # The writer knows where the bytes end now: no re-read (one thread hop less per PATCH).
        moved = writer.offset != info.offset
        updated = dataclasses.replace(
            info, offset=writer.offset, updated_at=time.time() if moved else info.updated_at
        )
        return updated, too_large

    async def _read_body(
        self, request: Request, lock: Lock, writer: ChunkWriter, room: int
    ) -> tuple[bool, bool]:
        """Feed the body to ``writer``: (went past ``room``, stopped early).

        The hot path: per chunk a length check and a list append; the writer hands
        ~1 MiB batches to a thread. The lock's interrupt cancels the read at once,
        even while waiting for a silent client. Write errors propagate.
        """
        too_large = False
        cut_short = False
        with anyio.CancelScope() as scope:
            unregister = lock.on_interrupt(scope.cancel)
            try:
                async for chunk in request.stream():
                    if len(chunk) > room:
                        if room:
                            await writer.write(chunk[:room])
                        too_large = True
                        break
                    room -= len(chunk)
                    await writer.write(chunk)
            except ClientDisconnect:
                cut_short = True
            finally:
                unregister()
        return too_large, cut_short or scope.cancelled_caught

    # -- DELETE, and the termination path shared with eviction and expiry --------------------

    async def _delete(self, request: Request, upload_id: str) -> Response:
        owner = await self._authenticate(request)
        await self._visible(upload_id, owner)
        async with self._lock(upload_id):
            info = await self._visible(upload_id, owner)
            finals = await self._remove(info)
        await self._terminated(info, finals)
        return self._response(204, {})

    async def _remove(self, info: UploadInfo) -> list[UploadInfo]:
        """Remove the upload (under its lock) and stop counting it; returns the unfinished
        finals that waited for it (read before the removal forgets them)."""
        assert isinstance(self.store, Terminater)
        finals = await self._finals_of(info)
        self._recent.forget(info.id)
        await self.store.remove(info.id)
        await self._release(info.owner, info.id)
        return finals

    async def _release(self, owner: str, upload_id: str) -> None:
        if self.quota is not None:
            await self.quota.release(owner, upload_id)
        if self.storage is not None:
            await self.storage.release(owner, upload_id)

    async def remove_upload(self, upload_id: str) -> bool:
        """Remove an upload whatever its state, as a DELETE does (asking a writer to let go),
        without the post_terminate hook: for the application's account removal."""
        try:
            async with self._lock(upload_id):
                try:
                    info = await self.store.get(upload_id)
                except UploadNotFound:
                    return False
                finals = await self._remove(info)
        except LockTimeout:
            logger.warning("upload %s stayed busy; its expiry removes it", upload_id)
            return False
        await self._terminated(info, finals, notify=False)
        return True

    async def _terminated(self, info: UploadInfo, finals: list[UploadInfo], *, notify: bool = True) -> None:
        """After a removal: an unfinished final goes with any of its parts; tell the app."""
        for final in finals:
            await self._terminate(final.id, lambda current: not current.complete, notify=notify)
        if notify and self.hooks.post_terminate is not None:
            try:
                await self.hooks.post_terminate(info)
            except Exception:  # the upload is gone either way
                logger.exception("post_terminate hook failed for upload %s", info.id)

    async def _terminate(
        self, upload_id: str, still: Callable[[UploadInfo], bool], *, notify: bool = True
    ) -> bool:
        """Remove ``upload_id`` if ``still(info)`` holds under its lock, taken without
        waiting or asking (a busy upload is not idle); True if it was removed."""
        try:
            async with self.locker.lock(upload_id, wait=0, request_release=False):
                try:
                    info = await self.store.get(upload_id)
                except UploadNotFound:
                    return False
                if not still(info):
                    return False
                finals = await self._remove(info)
        except LockTimeout:
            return False
        await self._terminated(info, finals, notify=notify)
        return True

    async def _evict(self, upload_id: str, still: Callable[[UploadInfo], bool]) -> bool:
        """Eviction (to make room under the caps) is a termination like a DELETE."""
        logger.info("evicting idle upload %s", upload_id)
        return await self._terminate(upload_id, still)

    # -- expiry ------------------------------------------------------------------------------

    async def sweep_expired(self) -> int:
        """Remove expired uploads (and leftovers of crashed requests); returns how many."""

        async def expire(upload_id: str, still: Callable[[UploadInfo], bool]) -> bool:
            return await self._terminate(upload_id, still, notify=False)

        return await sweep_expired(self.store, self.expiry_seconds, expire, self._finish_stranded)

    async def _finish_stranded(self, upload_id: str) -> bool:
        """Finish a complete upload whose finish was never recorded (its node died, or
        Redis was away, after the last byte); under its lock, taken without waiting or
        asking (a request holding it finishes the upload itself). True if it ran now."""
        try:
            async with self.locker.lock(upload_id, wait=0, request_release=False) as lock:
                try:
                    info = await self.store.get(upload_id)
                except UploadNotFound:
                    return False
                if info.finished or info.partial or not info.complete:
                    return False
                logger.info("finishing upload %s, complete but never finished", upload_id)
                await self._completed(info, lock)
                return True
        except LockTimeout:
            return False
        except (TusError, BackendUnavailable) as error:  # the next round tries again
            logger.warning("could not finish upload %s: %s", upload_id, error)
            return False

    def drain(self) -> None:
        """The node is shutting down: running PATCHes stop reading, keep what they have
        and answer with their offset (through the lock's interrupt); new ones do too."""
        self.locker.drain()

    # -- shared steps ------------------------------------------------------------------------

    async def _authenticate(self, request: Request) -> str:
        owner = await self.hooks.authenticate(request)
        if not owner:
            raise errors.unauthorized()
        return owner

    async def _visible(self, upload_id: str, owner: str) -> UploadInfo:
        """The upload if the caller may see it: 404 for missing *and* foreign, 410 if expired."""
        if not is_upload_id(upload_id):
            raise errors.not_found()
        try:
            info = await self.store.get(upload_id)
        except UploadNotFound:
            raise errors.not_found() from None
        if info.owner != owner:
            raise errors.not_found()
        if info.expired(self.expiry_seconds, time.time()):
            raise errors.expired()
        return info

    @contextlib.asynccontextmanager
    async def _lock(self, upload_id: str) -> AsyncIterator[Lock]:
        async with self.locker.lock(upload_id, wait=self.lock_wait) as lock:
            yield lock

    async def _completed(self, info: UploadInfo, lock: Lock) -> None:
        """All bytes are stored: stop counting the upload, assemble the finals waiting for
        it (a partial) or run the finish hook once (anything else)."""
        if self.quota is not None:
            await self.quota.release(info.owner, info.id)
        if info.partial:
            await self._assemble_finals_of(info)
            return
        if info.finished:
            return
        if lock.lost:  # exclusivity is gone: let the next request run the hook
            raise LockTimeout(info.id)
        if self.hooks.post_finish is not None:
            try:
                await self.hooks.post_finish(info)
            except (TusError, BackendUnavailable):
                raise
            except Exception:
                logger.exception("post_finish hook failed for upload %s", info.id)
                raise errors.finish_failed() from None
        await self.store.mark_finished(info.id)
        info.finished = True

    def _add_expires(self, headers: dict[str, str], info: UploadInfo) -> None:
        if info.complete and not info.partial:
            return
        expires = info.expires_at(self.expiry_seconds)
        if expires is not None:
            headers["Upload-Expires"] = http_date(expires)

    def _upload_url(self, request: Request, upload_id: str) -> str:
        scheme, host = request.url.scheme, request.headers.get("host") or request.url.netloc
        if self.trust_proxy:
            scheme, host = _forwarded(request, scheme, host)
        root = request.scope.get("root_path", "")
        return f"{scheme}://{host}{root}{self.base_path}/{upload_id}"

    def _response(self, status: int, headers: dict[str, str]) -> Response:
        headers["Tus-Resumable"] = TUS_VERSION
        return Response(status_code=status, headers=headers)

    def _error(self, error: TusError) -> Response:
        headers = {**error.headers, "Tus-Resumable": TUS_VERSION}
        body = {"error": {"code": error.code, "message": error.message}}
        return JSONResponse(body, status_code=error.status, headers=headers)


def _method(request: Request) -> str:
    """The method, or ``X-HTTP-Method-Override`` when present (for clients that cannot PATCH)."""
    override = request.headers.get("x-http-method-override")
    return (override or request.method).strip().upper()


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _writer_checks_enough(seen: UploadInfo, offset: int, content_length: int | None) -> bool:
    """Whether a PATCH may use the description read before the lock, or remembered from this
    process's last write to it (:mod:`~tusd_py.tus.recent`), instead of reading it again.

    A description is fixed once the length is known; what can change meanwhile is the
    data file (written or removed by another request), and opening the writer under the
    lock checks exactly that: it fails unless the file still exists and ends at
    ``offset`` (409 with the real offset, or 404). An upload short of its length has
    not been finished. Anything else (a deferred length, a final, an offset that
    moved, an empty body that opens no writer, a complete upload) is read again.
    """
    length = seen.length
    return content_length != 0 and length is not None and not seen.final and seen.offset == offset < length


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    return parse_non_negative(value, "Content-Length")


def _has_body(request: Request) -> bool:
    length = _content_length(request)
    return bool(length) or "transfer-encoding" in request.headers


def _forwarded(request: Request, scheme: str, host: str) -> tuple[str, str]:
    """Scheme and host as the client saw them, from ``Forwarded`` or ``X-Forwarded-*``."""
    headers = request.headers
    proto: str | None = None
    fwd_host: str | None = None
    if "forwarded" in headers:
        first = headers["forwarded"].split(",", 1)[0]
        for pair in first.split(";"):
            key, _, value = pair.strip().partition("=")
            value = value.strip().strip('"')
            if key.lower() == "proto":
                proto = value
            elif key.lower() == "host":
                fwd_host = value
    else:
        if "x-forwarded-proto" in headers:
            proto = headers["x-forwarded-proto"].split(",", 1)[0].strip()
        if "x-forwarded-host" in headers:
            fwd_host = headers["x-forwarded-host"].split(",", 1)[0].strip()
    if proto is not None and proto.lower() in ("http", "https"):
        scheme = proto.lower()
    if fwd_host and _HOST_RE.match(fwd_host):
        host = fwd_host
    return scheme, host

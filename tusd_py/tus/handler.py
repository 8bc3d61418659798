"""The tus 1.0.0 protocol handler (tusd's pkg/handler, for Starlette).

``TusHandler(...).routes`` serves ``/files``, ``/files/`` (creation, OPTIONS)
and ``/files/{upload_id}`` (HEAD, PATCH, DELETE, OPTIONS). Every request on an
existing upload first checks ownership without the lock (another owner's upload
answers 404 and is never touched, not even interrupted), then takes the
upload's lock and re-reads it. Bodies are streamed into the store's writer;
the lock's interrupt cancels the body read when another request asks for the
upload, and the bytes received so far are kept.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator

import anyio
from redis.exceptions import RedisError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .hooks import Hooks
from .locker import Lock, Locker, LockTimeout
from .protocol import (
    OFFSET_CONTENT_TYPE,
    TUS_VERSION,
    Checksum,
    Concat,
    TusError,
    checksum_algorithms_header,
    http_date,
    is_upload_id,
    parse_checksum,
    parse_concat,
    parse_metadata,
    parse_non_negative,
)
from .quota import QuotaExceeded, RedisQuota
from .store import (
    ChunkWriter,
    Concater,
    LengthDeferrer,
    OffsetMismatch,
    Store,
    Terminater,
    UploadBusy,
    UploadInfo,
    UploadNotFound,
    extensions_for,
    is_storage_full,
)

logger = logging.getLogger("tusd_py.tus")

#: Methods the routes accept; the handler answers 405 itself (with tus headers) for the rest.
_ROUTE_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_COLLECTION_METHODS = ("POST", "OPTIONS")
#: Starlette's per-route body limit overrides an app-wide one: the tus routes police
#: their own sizes (Tus-Max-Size, Upload-Length) and answer with tus headers.
_NO_BODY_LIMIT = 2**62
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
#: Temporary files untouched this long are leftovers of crashed requests.
_TEMPORARY_GRACE = 3600.0


class TusHandler:
    """tus 1.0.0 core + creation, creation-with-upload, creation-defer-length,
    termination, checksum, expiration and concatenation (as far as ``store`` can).

    ``max_size``: Tus-Max-Size, the largest upload. ``expiry_seconds``: unfinished
    uploads expire this long after their last write (0 disables). ``lock_wait``:
    how long a request waits for an upload's lock before answering 423.
    ``trust_proxy``: build URLs from X-Forwarded-Host/-Proto and Forwarded.
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
        quota: RedisQuota | None = None,
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
        self.lock_wait = lock_wait
        self.base_path = base_path.rstrip("/")
        self.extensions = extensions_for(store, expiration=expiry_seconds > 0)
        terminates = isinstance(store, Terminater)
        self._member_methods = ("HEAD", "PATCH", *(("DELETE",) if terminates else ()), "OPTIONS")
        self.routes: list[BaseRoute] = [
            Route(path, endpoint, methods=_ROUTE_METHODS, name=name, max_body_size=_NO_BODY_LIMIT)
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
                raise TusError(405, "method_not_allowed", "method not allowed", {"Allow": ", ".join(allowed)})
            if request.headers.get("tus-resumable") != TUS_VERSION:
                raise TusError(
                    412,
                    "unsupported_version",
                    f"Tus-Resumable must be {TUS_VERSION}",
                    {"Tus-Version": TUS_VERSION},
                )
            if upload_id is None:
                return await self._post(request)
            if method == "HEAD":
                return await self._head(request, upload_id)
            if method == "PATCH":
                return await self._patch(request, upload_id)
            return await self._delete(request, upload_id)
        except TusError as error:
            return self._error(error, method)
        except LockTimeout:
            return self._error(
                TusError(
                    423, "locked", "the upload is in use by another request; retry", {"Retry-After": "1"}
                ),
                method,
            )
        except RedisError:
            logger.exception("redis unavailable on %s %s", method, request.url.path)
            return self._error(
                TusError(503, "unavailable", "service temporarily unavailable", {"Retry-After": "5"}),
                method,
            )
        except Exception:
            logger.exception("unhandled error on %s %s", method, request.url.path)
            return self._error(TusError(500, "internal_error", "internal server error"), method)

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
            raise TusError(400, "invalid_concat", "concatenation is not supported")
        metadata_header = headers.get("upload-metadata", "")
        metadata = parse_metadata(metadata_header)
        length_header = headers.get("upload-length")
        defer_header = headers.get("upload-defer-length")
        if concat is not None and concat.final:
            if length_header is not None or defer_header is not None:
                raise TusError(
                    400, "invalid_header", "a final upload takes no Upload-Length or Upload-Defer-Length"
                )
            if _has_body(request):
                raise TusError(403, "body_not_allowed", "a final upload takes no body")
            return await self._post_final(request, owner, concat, metadata, metadata_header)
        length = self._creation_length(length_header, defer_header)

        with_body = _media_type(headers.get("content-type")) == OFFSET_CONTENT_TYPE
        checksum = None
        if with_body and "upload-checksum" in headers:
            checksum = parse_checksum(headers["upload-checksum"])
        content_length = _content_length(request)
        limit = self.max_size if length is None else length
        if with_body and content_length is not None and content_length > limit:
            raise TusError(413, "too_large", "the body is longer than the upload")

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
        if counted:
            await self._reserve(info)
        try:
            await self.store.create(info)
        except OSError as error:
            if counted and self.quota is not None:
                await self.quota.release(owner, info.id)
            if is_storage_full(error):
                raise TusError(507, "insufficient_storage", "no space left for uploads") from None
            raise

        location = self._upload_url(request, info.id)
        async with self._lock(info.id) as lock:
            info = await self.store.get(info.id)
            too_large = False
            if with_body and content_length != 0:
                try:
                    info, too_large = await self._receive(request, info, lock, checksum, limit)
                except TusError as error:  # the upload exists: tell the client where it is
                    error.headers.setdefault("Location", location)
                    raise
            if info.complete:
                await self._completed(info, lock)
        if too_large:
            raise _too_large(info, location)
        response_headers = {"Location": location, "Upload-Offset": str(info.offset)}
        self._add_expires(response_headers, info)
        return self._response(201, response_headers)

    def _creation_length(self, length_header: str | None, defer_header: str | None) -> int | None:
        if length_header is not None and defer_header is not None:
            raise TusError(400, "invalid_header", "send Upload-Length or Upload-Defer-Length, not both")
        if length_header is not None:
            length = parse_non_negative(length_header, "Upload-Length")
            if length > self.max_size:
                raise TusError(413, "too_large", f"uploads are limited to {self.max_size} bytes")
            return length
        if defer_header is not None:
            if defer_header.strip() != "1":
                raise TusError(400, "invalid_header", "Upload-Defer-Length must be 1")
            if not isinstance(self.store, LengthDeferrer):
                raise TusError(400, "invalid_header", "deferred lengths are not supported")
            return None
        raise TusError(400, "invalid_header", "Upload-Length or Upload-Defer-Length: 1 is required")

    async def _post_final(
        self,
        request: Request,
        owner: str,
        concat: Concat,
        metadata: dict[str, str],
        metadata_header: str,
    ) -> Response:
        assert isinstance(self.store, Concater)
        info = UploadInfo(
            id=secrets.token_hex(16),
            owner=owner,
            length=None,
            metadata=metadata,
            metadata_header=metadata_header,
            parts=concat.parts,
            created_at=time.time(),
        )
        async with contextlib.AsyncExitStack() as stack:
            # Parts are locked (in a fixed order: no deadlock) so none changes or
            # vanishes while it is copied; complete parts are never written anyway.
            parts: dict[str, UploadInfo] = {}
            for part_id in sorted(set(concat.parts)):
                await stack.enter_async_context(
                    self.locker.lock(part_id, wait=self.lock_wait, request_release=False)
                )
                parts[part_id] = await self._part(part_id, owner)
            info.length = sum(parts[part_id].offset for part_id in concat.parts)
            if info.length > self.max_size:
                raise TusError(413, "too_large", f"uploads are limited to {self.max_size} bytes")
            if self.hooks.pre_create is not None:
                await self.hooks.pre_create(request, info)
            try:
                await self.store.concatenate(info, list(concat.parts))
            except UploadNotFound:
                raise TusError(400, "invalid_concat", "a partial upload changed; retry") from None
            except OSError as error:
                if is_storage_full(error):
                    raise TusError(507, "insufficient_storage", "no space left") from None
                raise
        async with self._lock(info.id) as lock:
            info = await self.store.get(info.id)
            await self._completed(info, lock)
        headers = {"Location": self._upload_url(request, info.id), "Upload-Offset": str(info.offset)}
        return self._response(201, headers)

    async def _part(self, part_id: str, owner: str) -> UploadInfo:
        """A part of a final upload: the caller's, partial, complete and not expired."""
        refused = TusError(400, "invalid_concat", f"{part_id} is not a complete partial upload")
        try:
            part = await self.store.get(part_id)
        except UploadNotFound:
            raise refused from None
        if part.owner != owner or not part.partial or not part.complete:
            raise refused
        if part.expired(self.expiry_seconds, time.time()):
            raise refused
        return part

    async def _reserve(self, info: UploadInfo) -> None:
        if self.quota is None:
            return
        nbytes = self.max_size if info.length is None else info.length
        for attempt in range(2):
            try:
                await self.quota.reserve(info.owner, info.id, nbytes)
                return
            except QuotaExceeded as exceeded:
                if attempt == 0 and await self._reconcile(info.owner):
                    continue
                what = "unfinished uploads" if exceeded.reason == "uploads" else "pending bytes"
                raise TusError(
                    429,
                    "too_many_uploads",
                    f"too many {what}: finish or delete some uploads first",
                    {"Retry-After": str(self.quota.retry_after)},
                ) from None

    async def _reconcile(self, owner: str) -> bool:
        """Drop quota entries of uploads that are gone, complete or expired."""
        assert self.quota is not None
        released = False
        now = time.time()
        for upload_id in await self.quota.held(owner):
            try:
                info = await self.store.get(upload_id)
                stale = info.owner != owner or info.complete or info.expired(self.expiry_seconds, now)
            except UploadNotFound:
                stale = True
            if stale:
                await self.quota.release(owner, upload_id)
                released = True
        return released

    # -- HEAD --------------------------------------------------------------------------------

    async def _head(self, request: Request, upload_id: str) -> Response:
        owner = await self._authenticate(request)
        await self._visible(upload_id, owner)
        async with self._lock(upload_id) as lock:
            info = await self._visible(upload_id, owner)
            if info.complete:
                await self._completed(info, lock)
        headers = {"Upload-Offset": str(info.offset), "Cache-Control": "no-store"}
        if info.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(info.length)
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
            raise TusError(415, "unsupported_media_type", f"Content-Type must be {OFFSET_CONTENT_TYPE}")
        if "upload-offset" not in headers:
            raise TusError(400, "invalid_header", "Upload-Offset is required")
        offset = parse_non_negative(headers["upload-offset"], "Upload-Offset")
        checksum = parse_checksum(headers["upload-checksum"]) if "upload-checksum" in headers else None
        declared = None
        if "upload-length" in headers:
            declared = parse_non_negative(headers["upload-length"], "Upload-Length")
        content_length = _content_length(request)

        await self._visible(upload_id, owner)
        async with self._lock(upload_id) as lock:
            info = await self._visible(upload_id, owner)
            if info.final:
                raise TusError(403, "final_upload", "a final upload cannot be written to")
            if offset != info.offset:
                raise TusError(
                    409, "offset_mismatch", f"Upload-Offset is {offset} but the upload is at {info.offset}"
                )
            if declared is not None:
                info = await self._declare_length(info, declared)
            limit = self.max_size if info.length is None else info.length
            if content_length is not None and offset + content_length > limit:
                raise TusError(413, "too_large", "the body goes past the upload's length")
            too_large = False
            if content_length != 0:
                info, too_large = await self._receive(request, info, lock, checksum, limit)
            if info.complete:
                await self._completed(info, lock)
        if too_large:
            raise _too_large(info)
        response_headers = {"Upload-Offset": str(info.offset)}
        self._add_expires(response_headers, info)
        return self._response(204, response_headers)

    async def _declare_length(self, info: UploadInfo, declared: int) -> UploadInfo:
        if not info.deferred:
            if declared != info.length:
                raise TusError(400, "invalid_header", "Upload-Length cannot be changed")
            return info
        if declared < info.offset:
            raise TusError(400, "invalid_header", "Upload-Length is below the upload's offset")
        if declared > self.max_size:
            raise TusError(413, "too_large", f"uploads are limited to {self.max_size} bytes")
        assert isinstance(self.store, LengthDeferrer)
        await self.store.declare_length(info.id, declared)
        if self.quota is not None:
            await self.quota.update(info.owner, info.id, declared)
        return await self.store.get(info.id)

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

        Stops early, keeping what arrived, when the client goes away or another
        request asks for the lock. A checksummed body is staged and appended only
        once verified, so an unverified byte is never part of the upload.
        """
        try:
            writer = await self.store.open_writer(
                info.id,
                info.offset,
                staged=checksum is not None,
                hasher=checksum.new_hasher() if checksum is not None else None,
            )
        except OffsetMismatch as mismatch:
            raise TusError(409, "offset_mismatch", f"the upload is at {mismatch.stored}") from None
        except UploadBusy:
            raise LockTimeout(info.id) from None
        except UploadNotFound:
            raise TusError(404, "not_found", "upload not found") from None
        try:
            too_large, cut_short = await self._read_body(request, lock, writer, limit - info.offset)
            if checksum is not None and (cut_short or too_large):
                await writer.discard()  # an incomplete chunk cannot be verified
            else:
                await writer.flush()
                if checksum is not None and writer.digest() != checksum.digest:
                    await writer.discard()
                    raise TusError(
                        460,
                        "checksum_mismatch",
                        f"the body does not match its {checksum.algorithm} checksum",
                    )
                await writer.commit()
        except OSError as error:
            if not is_storage_full(error):
                raise
            logger.warning("storage full while writing upload %s: %s", info.id, error)
            stored = await self.store.get(info.id)
            raise TusError(
                507,
                "insufficient_storage",
                "no space left; the bytes that were stored are kept",
                {"Upload-Offset": str(stored.offset)},
            ) from None
        finally:
            writer.close()
        return await self.store.get(info.id), too_large

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

    # -- DELETE ------------------------------------------------------------------------------

    async def _delete(self, request: Request, upload_id: str) -> Response:
        owner = await self._authenticate(request)
        assert isinstance(self.store, Terminater)
        await self._visible(upload_id, owner)
        async with self._lock(upload_id):
            info = await self._visible(upload_id, owner)
            await self.store.remove(upload_id)
        if self.quota is not None:
            await self.quota.release(owner, upload_id)
        if self.hooks.post_terminate is not None:
            try:
                await self.hooks.post_terminate(info)
            except Exception:  # the upload is gone either way
                logger.exception("post_terminate hook failed for upload %s", upload_id)
        return self._response(204, {})

    # -- expiry ------------------------------------------------------------------------------

    async def sweep_expired(self) -> int:
        """Remove expired uploads (and leftovers of crashed requests); returns how many.

        An upload being written is never expired under its writer: the sweep
        takes each lock without waiting and without asking for it.
        """
        if not isinstance(self.store, Terminater):
            return 0
        removed = 0
        if self.expiry_seconds > 0:
            now = time.time()
            for candidate in await self.store.scan_unfinished():
                if not candidate.expired(self.expiry_seconds, now):
                    continue
                try:
                    async with self.locker.lock(candidate.id, wait=0, request_release=False):
                        try:
                            info = await self.store.get(candidate.id)
                        except UploadNotFound:
                            continue
                        if not info.expired(self.expiry_seconds, time.time()):
                            continue
                        await self.store.remove(info.id)
                except LockTimeout:
                    continue
                if self.quota is not None:
                    await self.quota.release(info.owner, info.id)
                removed += 1
        grace = max(self.expiry_seconds, _TEMPORARY_GRACE)
        await self.store.sweep_temporary(time.time() - grace)
        return removed

    # -- shared steps ------------------------------------------------------------------------

    async def _authenticate(self, request: Request) -> str:
        owner = await self.hooks.authenticate(request)
        if not owner:
            raise TusError(401, "unauthorized", "authentication required", {"WWW-Authenticate": "Bearer"})
        return owner

    async def _visible(self, upload_id: str, owner: str) -> UploadInfo:
        """The upload if the caller may see it: 404 for missing *and* foreign, 410 if expired."""
        if not is_upload_id(upload_id):
            raise TusError(404, "not_found", "upload not found")
        try:
            info = await self.store.get(upload_id)
        except UploadNotFound:
            raise TusError(404, "not_found", "upload not found") from None
        if info.owner != owner:
            raise TusError(404, "not_found", "upload not found")
        if info.expired(self.expiry_seconds, time.time()):
            raise TusError(410, "expired", "the upload has expired")
        return info

    @contextlib.asynccontextmanager
    async def _lock(self, upload_id: str) -> AsyncIterator[Lock]:
        async with self.locker.lock(upload_id, wait=self.lock_wait) as lock:
            yield lock

    async def _completed(self, info: UploadInfo, lock: Lock) -> None:
        """All bytes are stored: stop counting the upload and run the finish hook once."""
        if self.quota is not None and not info.final:
            await self.quota.release(info.owner, info.id)
        if info.partial or info.finished:
            return
        if lock.lost:  # exclusivity is gone: let the next request run the hook
            raise LockTimeout(info.id)
        if self.hooks.post_finish is not None:
            try:
                await self.hooks.post_finish(info)
            except TusError:
                raise
            except Exception:
                logger.exception("post_finish hook failed for upload %s", info.id)
                raise TusError(
                    500, "finish_failed", "the upload is stored but could not be finished; retry"
                ) from None
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

    def _error(self, error: TusError, method: str) -> Response:
        headers = {**error.headers, "Tus-Resumable": TUS_VERSION}
        body = {"error": {"code": error.code, "message": error.message}}
        return JSONResponse(body, status_code=error.status, headers=headers)


def _too_large(info: UploadInfo, location: str | None = None) -> TusError:
    headers = {"Upload-Offset": str(info.offset)}
    if location is not None:
        headers["Location"] = location
    return TusError(413, "too_large", "the body goes past the upload's length", headers)


def _method(request: Request) -> str:
    """The method, or ``X-HTTP-Method-Override`` when present (for clients that cannot PATCH)."""
    override = request.headers.get("x-http-method-override")
    return (override or request.method).strip().upper()


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


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

"""Every refusal the tus endpoint answers, named in one place.

The handler and the parsers raise these instead of spelling out statuses and
codes inline, so the catalogue of answers (and the headers each carries) can be
read, and kept in step with ``openapi.yaml``, in one file. This module is a leaf:
it imports nothing of the package.
"""

from __future__ import annotations

from collections.abc import Mapping

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"

#: Seconds a client is asked to wait after a busy lock or a backend outage.
LOCKED_RETRY_AFTER = 1
BACKEND_RETRY_AFTER = 5


class TusError(Exception):
    """A refusal with the HTTP status, a machine-readable code and a human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class BackendUnavailable(Exception):
    """A store, locker or quota backend cannot be reached (Redis down, a network split).

    The Redis implementations raise it instead of their client's exceptions, so the
    handler knows no backend; it answers :func:`backend_unavailable`.
    """


# -- 4xx/5xx of the protocol itself ----------------------------------------------------------


def method_not_allowed(allowed: tuple[str, ...]) -> TusError:
    return TusError(405, "method_not_allowed", "method not allowed", {"Allow": ", ".join(allowed)})


def unsupported_version() -> TusError:
    return TusError(
        412, "unsupported_version", f"Tus-Resumable must be {TUS_VERSION}", {"Tus-Version": TUS_VERSION}
    )


def unauthorized() -> TusError:
    return TusError(401, "unauthorized", "authentication required", {"WWW-Authenticate": "Bearer"})


def not_found() -> TusError:
    """Missing *and* foreign uploads: the caller cannot tell them apart."""
    return TusError(404, "not_found", "upload not found")


def expired() -> TusError:
    return TusError(410, "expired", "the upload has expired")


def invalid_header(message: str) -> TusError:
    return TusError(400, "invalid_header", message)


def invalid_metadata(message: str) -> TusError:
    return TusError(400, "invalid_metadata", message)


def invalid_concat(message: str) -> TusError:
    return TusError(400, "invalid_concat", message)


def invalid_checksum(message: str) -> TusError:
    return TusError(400, "invalid_checksum", message)


def unsupported_checksum_algorithm(algorithm: str, supported: str) -> TusError:
    return TusError(
        400,
        "unsupported_checksum_algorithm",
        f"checksum algorithm {algorithm!r} is not supported (supported: {supported})",
    )


def checksum_mismatch(algorithm: str) -> TusError:
    return TusError(460, "checksum_mismatch", f"the body does not match its {algorithm} checksum")


def unsupported_media_type() -> TusError:
    return TusError(415, "unsupported_media_type", f"Content-Type must be {OFFSET_CONTENT_TYPE}")


def final_upload_has_body() -> TusError:
    return TusError(403, "body_not_allowed", "a final upload takes no body")


def final_upload_not_writable() -> TusError:
    return TusError(403, "final_upload", "a final upload cannot be written to")


def offset_mismatch(sent: int | None, stored: int) -> TusError:
    """409 with the upload's real offset, so the client can resume from it."""
    said = "" if sent is None else f"Upload-Offset is {sent} but "
    return TusError(
        409, "offset_mismatch", f"{said}the upload is at {stored}", {"Upload-Offset": str(stored)}
    )


def too_large_upload(max_size: int) -> TusError:
    return TusError(413, "too_large", f"uploads are limited to {max_size} bytes")


def too_large_body(offset: int | None = None, location: str | None = None) -> TusError:
    headers = {}
    if offset is not None:
        headers["Upload-Offset"] = str(offset)
    if location is not None:
        headers["Location"] = location
    return TusError(413, "too_large", "the body goes past the upload's length", headers)


def too_many_uploads(what: str, retry_after: int) -> TusError:
    return TusError(
        429,
        "too_many_uploads",
        f"too many {what}: finish or delete some uploads first",
        {"Retry-After": str(retry_after)},
    )


def locked() -> TusError:
    return TusError(
        423,
        "locked",
        "the upload is in use by another request; retry",
        {"Retry-After": str(LOCKED_RETRY_AFTER)},
    )


def backend_unavailable() -> TusError:
    """423, not 503: tus-js-client retries a HEAD answered 423 but restarts the upload
    from byte 0 (and forgets its URL on a 4xx) for any other non-2xx answer, so a brief
    Redis outage must look like a busy lock to tus clients (issue 10)."""
    return TusError(
        423,
        "unavailable",
        "service temporarily unavailable; retry",
        {"Retry-After": str(BACKEND_RETRY_AFTER)},
    )


def insufficient_storage(offset: int | None = None) -> TusError:
    if offset is None:
        return TusError(507, "insufficient_storage", "no space left for uploads")
    return TusError(
        507,
        "insufficient_storage",
        "no space left; the bytes that were stored are kept",
        {"Upload-Offset": str(offset)},
    )


def finish_failed() -> TusError:
    return TusError(500, "finish_failed", "the upload is stored but could not be finished; retry")


def internal_error() -> TusError:
    return TusError(500, "internal_error", "internal server error")


def storage_quota_exceeded(limit: int) -> TusError:
    """403, not 413/429/507: tus-js-client 4.3 (``defaultOnShouldRetry``) and Uppy's
    @uppy/tus 6 retry 409, 423, 429 and every 5xx, and give up on any other 4xx. A full
    quota does not clear by waiting, so the client must stop and tell the user."""
    return TusError(
        403,
        "storage_quota_exceeded",
        f"storage quota (TUSD_PY_STORAGE_QUOTA, {limit} bytes) exceeded: delete uploads or tasks first",
    )

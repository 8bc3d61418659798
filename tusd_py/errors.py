"""JSON errors: ``{"error": {"code": ..., "message": ...}}`` everywhere outside tus.

Handlers raise :class:`ApiError` (or Starlette's ``HTTPException``); the
exception handlers installed by the app factory turn both into JSON, and any
other exception into a bare 500 with no stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

logger = logging.getLogger("tusd_py")

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_body",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(HTTPException):
    """An HTTP error with a machine-readable ``code``."""

    def __init__(
        self,
        status_code: int,
        message: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail=message, headers=dict(headers or {}))
        self.code = code or _DEFAULT_CODES.get(status_code, "error")


def error_response(
    status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one JSON error renderer: the exception handlers, CORS refusals, ``/readyz`` and
    the bearer backend (handed it by the app) all answer through it."""
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status_code, headers=dict(headers or {}))


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = getattr(exc, "code", None) or _DEFAULT_CODES.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return error_response(exc.status_code, code, str(exc.detail), headers)


RETRY_AFTER_UNAVAILABLE = 2
"""Seconds a client is asked to wait while Redis is unreachable."""


def unavailable_response(status_code: int = 503, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """Redis does not answer: ``status_code`` (503; 423 on tus routes) with ``Retry-After``."""
    return error_response(
        status_code,
        "unavailable",
        "the service's storage does not answer; retry shortly",
        {"Retry-After": str(RETRY_AFTER_UNAVAILABLE), **(headers or {})},
    )


async def redis_error_handler(request: Request, exc: Exception) -> Response:
    """A ``RedisError`` out of any route: 503 + ``Retry-After``, and the connection stays
    open (this handler answers from Starlette's ExceptionMiddleware, not the 500 path)."""
    logger.warning("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
    return unavailable_response()


async def unhandled_exception_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")

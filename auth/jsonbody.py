"""Reading a small JSON body safely: bounded size and nesting depth, JSON errors only.

``json.loads`` raises ``RecursionError`` (not ``ValueError``) on deeply nested
input such as ``[`` x 5000, which became a 500; and Starlette's ``max_body_size``
answers 413 as plain text. So the body is read here, stopping past ``max_bytes``
(413), and its nesting is measured by a scan that skips strings before it is
parsed (400 past ``max_depth``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

MAX_DEPTH = 16


class BodyError(HTTPException):
    """Rendered as ``{"error": {"code", "message"}}`` by the application."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(status_code, detail=message)
        self.code = code


def nesting_depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text (brackets inside strings ignored)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


async def read_json(request: Request, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed body; 415, 413 or 400 (as :class:`BodyError`) for anything else."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BodyError(415, "unsupported_media_type", "send application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyError(413, "too_large", f"the body may be at most {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyError(413, "too_large", f"the body may be at most {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if nesting_depth(raw) > max_depth:
        raise BodyError(400, "invalid_json", f"the body is nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BodyError(400, "invalid_json", "the body is not valid JSON") from None

"""tus 1.0.0 vocabulary: header names, constants and strict header parsing.

Everything here is pure (no I/O), so the rules of the protocol can be read and
tested in one place. Parsers raise :class:`TusError` with the status the spec
asks for; the handler turns it into a response.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import errors
from .errors import OFFSET_CONTENT_TYPE, TUS_VERSION, TusError

__all__ = ["OFFSET_CONTENT_TYPE", "TUS_VERSION", "TusError"]


#: Largest ``Upload-Metadata`` header we accept, in bytes (tusd has no limit; 4 KiB is plenty
#: for a filename, a type and a few keys, and bounds what we store per upload).
MAX_METADATA_BYTES = 4096
#: Most parts one final upload may name (bounds the work of one request).
MAX_CONCAT_PARTS = 1000
#: Integers in headers are at most this long: 19 digits always fit in a signed 64-bit integer.
_MAX_DIGITS = 18

#: Checksum algorithms we verify (sha1 is the one the spec makes mandatory).
CHECKSUM_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "md5": hashlib.md5,
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
}

#: Upload ids are secrets.token_hex(16): 128 random bits, lower-case hex, nothing a path can abuse.
UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_DIGITS_RE = re.compile(r"^[0-9]+$")
_METADATA_KEY_RE = re.compile(r"^[!-+\--~]+$")  # visible ASCII except ',' (0x2c); no spaces


def is_upload_id(value: str) -> bool:
    return bool(UPLOAD_ID_RE.match(value))


def parse_non_negative(value: str, header: str) -> int:
    """A decimal integer >= 0 (no sign, no spaces), as Upload-Offset and Upload-Length are."""
    value = value.strip()
    if not _DIGITS_RE.match(value) or len(value) > _MAX_DIGITS:
        raise errors.invalid_header(f"{header} must be a non-negative integer")
    return int(value)


def parse_metadata(header: str) -> dict[str, str]:
    """Parse ``Upload-Metadata``: ``key base64,key2 base64,key3`` into decoded strings.

    Keys are unique, non-empty, without spaces or commas; a value may be absent
    (the empty string). Values are decoded as UTF-8, undecodable bytes replaced;
    the header itself is stored and echoed as sent, so nothing is lost.
    """
    if len(header) > MAX_METADATA_BYTES:  # ASGI headers are latin-1: one char per byte
        raise errors.invalid_metadata(f"Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")
    result: dict[str, str] = {}
    if not header.strip():
        return result
    for raw_pair in header.split(","):
        pair = raw_pair.strip()
        key, _, value = pair.partition(" ")
        if not key or not _METADATA_KEY_RE.match(key):
            raise errors.invalid_metadata("Upload-Metadata keys must be non-empty, without spaces")
        if key in result:
            raise errors.invalid_metadata(f"Upload-Metadata key {key!r} is repeated")
        try:
            decoded = base64.b64decode(value, validate=True) if value else b""
        except (binascii.Error, ValueError):
            raise errors.invalid_metadata(f"Upload-Metadata value of {key!r} is not valid base64") from None
        result[key] = decoded.decode("utf-8", "replace")
    return result


@dataclass(frozen=True)
class Concat:
    """A parsed ``Upload-Concat``: ``partial``, or ``final`` with the ids of its parts."""

    partial: bool
    parts: tuple[str, ...] = field(default=())

    @property
    def final(self) -> bool:
        return not self.partial


def upload_id_from_url(url: str) -> str | None:
    """The upload id at the end of an upload URL (absolute or a path), else None."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if is_upload_id(last) else None


def parse_concat(header: str) -> Concat:
    """Parse ``Upload-Concat: partial`` or ``Upload-Concat: final;<url> <url> ...``."""
    value = header.strip()
    if value == "partial":
        return Concat(partial=True)
    kind, sep, rest = value.partition(";")
    if kind.strip() != "final" or not sep:
        raise errors.invalid_concat("Upload-Concat must be 'partial' or 'final;<urls>'")
    urls = rest.split()
    if not urls:
        raise errors.invalid_concat("Upload-Concat: final names no partial uploads")
    if len(urls) > MAX_CONCAT_PARTS:
        raise errors.invalid_concat(f"Upload-Concat: final names more than {MAX_CONCAT_PARTS} parts")
    parts: list[str] = []
    seen: set[str] = set()
    for url in urls:
        upload_id = upload_id_from_url(url)
        if upload_id is None:
            raise errors.invalid_concat("Upload-Concat names an invalid upload URL")
        if upload_id in seen:  # one part named N times would multiply its bytes for free
            raise errors.invalid_concat("Upload-Concat names a partial upload more than once")
        seen.add(upload_id)
        parts.append(upload_id)
    return Concat(partial=False, parts=tuple(parts))


@dataclass(frozen=True)
class Checksum:
    """A parsed ``Upload-Checksum``: the algorithm and the digest the chunk must have."""

    algorithm: str
    digest: bytes

    def new_hasher(self) -> Any:
        return CHECKSUM_ALGORITHMS[self.algorithm]()


def parse_checksum(header: str) -> Checksum:
    """Parse ``Upload-Checksum: <algorithm> <base64 digest>``.

    An unknown algorithm is 400 (the spec's answer); so is a digest that is not
    base64. Any other digest is compared with the chunk's (460 when it differs).
    """
    algorithm, sep, encoded = header.strip().partition(" ")
    algorithm = algorithm.lower()
    if not sep or not encoded.strip():
        raise errors.invalid_checksum("Upload-Checksum must be '<algorithm> <base64>'")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise errors.unsupported_checksum_algorithm(algorithm, checksum_algorithms_header())
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid_checksum("Upload-Checksum digest is not base64") from None
    # A digest of the wrong length is well-formed but can never match: the chunk is
    # read and answered 460 like any other mismatch (what clients expect), not 400.
    return Checksum(algorithm, digest)


def checksum_algorithms_header() -> str:
    return ",".join(sorted(CHECKSUM_ALGORITHMS))


def http_date(timestamp: float) -> str:
    """An RFC 9110 IMF-fixdate, as ``Upload-Expires`` wants."""
    return email.utils.formatdate(timestamp, usegmt=True)

"""The registry of operations: one entry per name, with what a download needs to know.

Adding an operation is one streaming function (``processing.transforms``) plus one
entry here. The upload's metadata key ``operation`` picks the entry (default
``uppercase``); :func:`validate_operation` lets the API refuse an unknown name when
the upload is created, before any byte is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from processing import faults, transforms
from processing.transforms import ProgressFn

DEFAULT_OPERATION = "uppercase"
StreamFn = Callable[[BinaryIO, BinaryIO, ProgressFn], None]


@dataclass(frozen=True)
class Operation:
    name: str
    description: str
    function: StreamFn
    content_type: str
    """Content-Type of the result download."""
    suffix: str
    """Appended to the uploaded file's name to name the result download."""
    fault: bool = False
    """A test-only operation, offered only with ``enable_fault_operations``."""


_OPERATIONS = (
    Operation(
        "uppercase",
        "Upper-case every letter of a UTF-8 text; other bytes pass through unchanged.",
        transforms.uppercase,
        "text/plain; charset=utf-8",
        ".upper.txt",
    ),
    Operation(
        "wordcount",
        "Count bytes, lines and words and list the 20 most frequent words (JSON).",
        transforms.wordcount,
        "application/json",
        ".wordcount.json",
    ),
    Operation(
        "sha256",
        "SHA-256, SHA-1 and MD5 digests of the file (JSON).",
        transforms.sha256,
        "application/json",
        ".sha256.json",
    ),
    Operation(
        "gzip",
        "gzip-compress the file.",
        transforms.gzip_compress,
        "application/gzip",
        ".gz",
    ),
    Operation(
        "fault-hang",
        "Test only: never finishes, so the try times out.",
        faults.hang,
        "application/octet-stream",
        ".bin",
        fault=True,
    ),
    Operation(
        "fault-crash",
        "Test only: the child process exits with status 3 on every try.",
        faults.crash,
        "application/octet-stream",
        ".bin",
        fault=True,
    ),
    Operation(
        "fault-crash-once",
        "Test only: crashes on the first try, then copies the file unchanged.",
        faults.crash_once,
        "application/octet-stream",
        ".bin",
        fault=True,
    ),
    Operation(
        "fault-fork",
        "Test only: forks a grandchild that never exits, then copies the file slowly.",
        faults.fork_then_copy,
        "application/octet-stream",
        ".bin",
        fault=True,
    ),
    Operation(
        "fault-slow",
        "Test only: copies the file unchanged, slowly (about 2 s), reporting progress.",
        faults.slow_copy,
        "application/octet-stream",
        ".bin",
        fault=True,
    ),
)
REGISTRY: Mapping[str, Operation] = {op.name: op for op in _OPERATIONS}


def available_operations(enable_fault_operations: bool) -> list[Operation]:
    """The operations a caller may choose, in a stable order."""
    return [op for op in _OPERATIONS if enable_fault_operations or not op.fault]


def get_operation(name: str, enable_fault_operations: bool = True) -> Operation:
    """The entry for ``name``; ``KeyError`` if unknown or a disabled fault operation."""
    op = REGISTRY[name]
    if op.fault and not enable_fault_operations:
        raise KeyError(name)
    return op


def validate_operation(metadata: Mapping[str, str], enable_fault_operations: bool) -> str:
    """The operation an upload asks for (metadata ``operation``, default ``uppercase``).

    Raises ``ValueError("unknown operation 'x'; see GET /operations")`` so the app can
    answer 400 when the upload is created.
    """
    name = metadata.get("operation") or DEFAULT_OPERATION
    try:
        get_operation(name, enable_fault_operations)
    except KeyError:
        shown = (
            name if len(name) <= 64 and name.isprintable() else name[:64].encode("unicode_escape").decode()
        )
        raise ValueError(f"unknown operation '{shown}'; see GET /operations") from None
    return name


def result_filename(filename: str, operation: str) -> str:
    """The download name of a result: the upload's name plus the operation's suffix."""
    op = REGISTRY.get(operation)
    return filename + (op.suffix if op else ".bin")

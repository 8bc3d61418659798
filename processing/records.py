"""The shared vocabulary of processing: task states, event names, the ``Task`` record,
Redis key names and time helpers. A leaf module with no Redis, so that the event log
and the task store (and the API, which only reads records) build on it without a cycle:
``records <- events <- tasks``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

TASK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
"""What a task (= upload) id may look like; anything else is never a task."""
MAX_ATTEMPTS_LIMIT = 50
"""Largest ``max_attempts`` a task may ask for; ARQ's own limit sits above it."""
MAX_FILENAME_LENGTH = 255
KEY_PREFIX = "tusd:"
ACTIVE_KEY = KEY_PREFIX + "tasks:active"
FINISHED_KEY = KEY_PREFIX + "tasks:finished"


class TaskStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
UNFINISHED_STATUSES = frozenset(TaskStatus) - FINAL_STATUSES


class EventName(StrEnum):
    QUEUED = "task.queued"
    PROGRESS = "task.progress"
    RETRYING = "task.retrying"
    COMPLETED = "task.completed"
    FAILED = "task.failed"
    CANCELLED = "task.cancelled"


def task_key(task_id: str) -> str:
    return f"{KEY_PREFIX}task:{task_id}"


def owner_index_key(owner: str) -> str:
    return f"{KEY_PREFIX}tasks:by-owner:{owner}"


def owner_active_key(owner: str) -> str:
    """The owner's unfinished tasks (a sorted set by creation time): their count is the
    cap ``TUSD_PY_MAX_UNFINISHED_TASKS`` checks, in one ``ZCARD``."""
    return f"{KEY_PREFIX}tasks:active-by-owner:{owner}"


def is_task_id(value: str) -> bool:
    return bool(TASK_ID_RE.match(value))


def now_ms() -> int:
    return int(time.time() * 1000)


def rfc3339(ms: int) -> str:
    """``2025-01-31T12:34:56.789Z``."""
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def text(value: bytes | str | int | None) -> str:
    """Redis replies are bytes or str depending on ``decode_responses``: accept both."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _printable(raw: str) -> str:
    cleaned = "".join(ch for ch in raw if ch.isprintable()).strip()
    return "" if cleaned == "null" else cleaned[:MAX_FILENAME_LENGTH]  # Uppy sends "null"


def clean_filename(raw: str) -> str:
    """A display name fit for the record: control characters dropped, trimmed, capped;
    empty (or Uppy's string "null") becomes ``upload``. The one sanitizer of names: a
    name is never used as a filesystem path (files are named by task id)."""
    return _printable(raw) or "upload"


def filename_from_metadata(metadata: Mapping[str, str]) -> str:
    """The display name of an upload: metadata ``filename``, else ``name`` (Uppy), else
    ``upload``."""
    return _printable(metadata.get("filename") or "") or clean_filename(metadata.get("name") or "")


@dataclass(frozen=True)
class Task:
    """One upload's processing, as stored in Redis (all fields are strings there)."""

    id: str
    owner: str
    filename: str
    size: int
    operation: str
    max_attempts: int
    status: TaskStatus = TaskStatus.QUEUED
    progress_bytes: int = 0
    attempts: int = 0
    error: str | None = None
    created_ms: int = field(default_factory=now_ms)
    started_ms: int | None = None
    finished_ms: int | None = None
    failures: int = 0
    """Tries that failed (timeout, the operation's crash or error): what ``max_attempts``
    budgets. A try cut short by its worker's death is counted in ``attempts`` (starts)
    but is not a failure. Internal: not in :meth:`to_public`."""
    source: str = ""
    """Absolute path of the upload's bytes, as the finish hook's store reported it: the
    worker reads it from here instead of knowing the store's disk layout. Internal:
    never in :meth:`to_public`. Empty on records written before it existed."""

    @property
    def progress(self) -> float:
        """Fraction done, 0..1 (1 once completed, whatever the size)."""
        if self.status is TaskStatus.COMPLETED:
            return 1.0
        if self.size <= 0:
            return 0.0
        return round(min(1.0, self.progress_bytes / self.size), 4)

    @property
    def index_member(self) -> str:
        return f"{self.created_ms:013d}:{self.id}"

    @property
    def result_url(self) -> str | None:
        return f"/tasks/{self.id}/result" if self.status is TaskStatus.COMPLETED else None

    def to_public(self) -> dict[str, Any]:
        """The JSON representation served by ``GET /tasks/{id}`` and in every event."""
        return {
            "id": self.id,
            "filename": self.filename,
            "size": self.size,
            "operation": self.operation,
            "status": self.status.value,
            "progress": self.progress,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "error": self.error,
            "created_at": rfc3339(self.created_ms),
            "started_at": rfc3339(self.started_ms) if self.started_ms is not None else None,
            "finished_at": rfc3339(self.finished_ms) if self.finished_ms is not None else None,
            "result_url": self.result_url,
        }

    def to_fields(self) -> dict[str, str]:
        return {
            "id": self.id,
            "owner": self.owner,
            "filename": self.filename,
            "size": str(self.size),
            "operation": self.operation,
            "max_attempts": str(self.max_attempts),
            "status": self.status.value,
            "progress_bytes": str(self.progress_bytes),
            "attempts": str(self.attempts),
            "error": self.error or "",
            "created_ms": str(self.created_ms),
            "started_ms": "" if self.started_ms is None else str(self.started_ms),
            "finished_ms": "" if self.finished_ms is None else str(self.finished_ms),
            "failures": str(self.failures),
            "source": self.source,
        }

    @classmethod
    def from_fields(cls, raw: Mapping[Any, Any]) -> Task:
        f = {text(k): text(v) for k, v in raw.items()}

        def opt_int(name: str) -> int | None:
            return int(f[name]) if f.get(name) else None

        return cls(
            id=f["id"],
            owner=f["owner"],
            filename=f["filename"],
            size=int(f["size"]),
            operation=f["operation"],
            max_attempts=int(f["max_attempts"]),
            status=TaskStatus(f["status"]),
            progress_bytes=int(f.get("progress_bytes") or 0),
            attempts=int(f.get("attempts") or 0),
            error=f.get("error") or None,
            created_ms=int(f["created_ms"]),
            started_ms=opt_int("started_ms"),
            finished_ms=opt_int("finished_ms"),
            failures=int(f.get("failures") or 0),
            source=f.get("source", ""),
        )

"""Where ``tusd-py upload`` remembers its uploads, so that running it again resumes them.

One JSON file per server (``<state dir>/<server>.json``). An entry is keyed by everything that
makes an upload *this* upload: the user, the operation, and the file's identity (absolute path,
size, mtime and a SHA-256 of its content). The same file sent to another server, as another
user or with another operation is therefore a separate upload, and an edited file starts over
instead of appending new bytes to an old upload. Writes are atomic (temporary file + rename)
under an advisory lock, so two uploads running at once do not lose each other's entries.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/tusd-py/uploads``, else ``~/.local/state/tusd-py/uploads``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tusd-py" / "uploads"


@dataclass(frozen=True)
class FileIdentity:
    path: str
    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """Hash the whole file: a changed byte anywhere must not resume an old upload."""
        resolved = path.resolve()
        digest = hashlib.sha256()
        with resolved.open("rb") as stream:
            stat = os.fstat(stream.fileno())
            while block := stream.read(1024 * 1024):
                digest.update(block)
        return cls(str(resolved), stat.st_size, stat.st_mtime_ns, digest.hexdigest())


@dataclass(frozen=True)
class ResumeKey:
    user_id: str
    operation: str
    file: FileIdentity

    def matches(self, entry: dict[str, Any]) -> bool:
        return bool(
            entry.get("user_id") == self.user_id
            and entry.get("operation") == self.operation
            and entry.get("file") == asdict(self.file)
        )


def _server_file_name(server: str) -> str:
    """A readable, collision-free file name for a server URL."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", server.split("://", 1)[-1]).strip("_")[:80]
    return f"{readable}-{hashlib.sha256(server.encode()).hexdigest()[:10]}.json"


class ResumeStore:
    """The upload URLs we created on one server, by :class:`ResumeKey`."""

    def __init__(self, state_dir: Path, server: str) -> None:
        self.server = server.rstrip("/")
        self.path = state_dir / _server_file_name(self.server)

    def get(self, key: ResumeKey) -> str | None:
        for entry in self._read():
            if key.matches(entry):
                return str(entry["url"])
        return None

    def put(self, key: ResumeKey, url: str) -> None:
        with self._locked() as entries:
            entries[:] = [e for e in entries if not key.matches(e)]
            entries.append(
                {"user_id": key.user_id, "operation": key.operation, "file": asdict(key.file), "url": url}
            )

    def remove(self, key: ResumeKey) -> None:
        with self._locked() as entries:
            entries[:] = [e for e in entries if not key.matches(e)]

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError:
            return []  # a damaged file only costs resumability; the next write replaces it
        entries = data.get("uploads", []) if isinstance(data, dict) else []
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("url"), str)]

    @contextmanager
    def _locked(self) -> Iterator[list[dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            yield entries
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads-")
            with os.fdopen(fd, "w") as out:
                json.dump({"server": self.server, "uploads": entries}, out, indent=1)
            os.replace(temporary, self.path)

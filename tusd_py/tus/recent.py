"""What this process last saw of the uploads it writes, so a PATCH reads nothing before
its lock (one thread hop and a description read less per PATCH).

A description is fixed once its length is known (owner, length, parts, metadata);
what moves is the offset and the last write time. An entry is a hint, never the
truth, and the handler uses one only where the writer it opens under the lock checks
what could have changed meanwhile: the data file must still exist and end at the
offset (404, or 409 with the real offset). Only the owner gets the shortcut: any
other caller takes the read every request takes, so a foreign id costs what a
missing one does. An entry that says "expired" is confirmed by a read; one that says
"not expired" is checked again against the last write time the writer finds when it
opens the data (a file time set back by hand, as the tests do, is seen there).
"""

from __future__ import annotations

from collections import OrderedDict

from .store import UploadInfo

CAPACITY = 4096


class RecentUploads:
    """A bounded LRU of writable uploads' last known state, per process."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, UploadInfo] = OrderedDict()

    def get(self, upload_id: str) -> UploadInfo | None:
        info = self._entries.get(upload_id)
        if info is not None:
            self._entries.move_to_end(upload_id)
        return info

    def remember(self, info: UploadInfo) -> None:
        """Keep ``info`` if another PATCH may follow it (a fixed length not yet reached)."""
        if info.length is None or info.final or info.offset >= info.length:
            self._entries.pop(info.id, None)
            return
        self._entries[info.id] = info
        self._entries.move_to_end(info.id)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        self._entries.pop(upload_id, None)

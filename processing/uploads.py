"""The one thing processing needs from the upload store: removing an upload.

A leaf module (no Redis, no ARQ), so the API's wiring can name the interface without
importing the worker's job. ``processing`` defines it; the app's wiring hands in the
tus store, so processing never knows the store's disk layout.
"""

from __future__ import annotations

from typing import Protocol


class UploadRemover(Protocol):
    """Removes an upload (its bytes and whatever else the store keeps for it) once its
    task's retention ends."""

    async def remove(self, upload_id: str) -> None: ...

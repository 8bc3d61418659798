"""An in-process tus app for fast protocol tests: file store, memory locker and quota.

The handler is built from the same defaults as the service (``Settings()``) unless a
test passes other knobs, and is driven over ``httpx.ASGITransport`` (no server, no
Redis). ``Recorder`` keeps what the hooks saw, so tests count finish-hook runs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request

from tusd_py.settings import Settings
from tusd_py.tus import FileStore, Hooks, MemoryLocker, MemoryQuota, TusHandler, UploadInfo

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


@dataclass
class Recorder:
    finished: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)


@dataclass
class MemoryTus:
    app: Starlette
    handler: TusHandler
    store: FileStore
    quota: MemoryQuota
    recorder: Recorder
    directory: Path

    def client(self, owner: str | None = None) -> httpx.AsyncClient:
        headers = dict(TUS)
        if owner is not None:
            headers["Authorization"] = f"Bearer {owner}"
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://testserver", headers=headers
        )

    def data_path(self, url: str) -> Path:
        return self.directory / url.rstrip("/").rsplit("/", 1)[-1]

    def age(self, url: str, seconds: float) -> None:
        """Pretend the upload's last write was ``seconds`` ago (the idle clock's input)."""
        stamp = time.time() - seconds
        os.utime(self.data_path(url), (stamp, stamp))


def build(directory: Path, **knobs: Any) -> MemoryTus:
    """The handler at the service's defaults; ``knobs`` override handler or quota options."""
    defaults = Settings()
    quota = MemoryQuota(
        max_uploads=knobs.pop("max_uploads", defaults.max_pending_uploads),
        max_bytes=knobs.pop("max_bytes", defaults.max_pending_bytes),
    )
    recorder = Recorder()

    async def authenticate(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    async def post_finish(info: UploadInfo) -> None:
        recorder.finished.append(info.id)

    async def post_terminate(info: UploadInfo) -> None:
        recorder.terminated.append(info.id)

    store = FileStore(directory)
    options: dict[str, Any] = {
        "max_size": defaults.max_upload_size,
        "expiry_seconds": defaults.upload_expiry,
        "idle_seconds": defaults.upload_idle_timeout,
        "lock_wait": 1.0,
        **knobs,
    }
    handler = TusHandler(
        store,
        MemoryLocker(),
        Hooks(authenticate, post_finish=post_finish, post_terminate=post_terminate),
        quota=quota,
        **options,
    )
    app = Starlette(routes=handler.routes)
    return MemoryTus(app, handler, store, quota, recorder, directory)


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def sha1_header(data: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()


async def create(client: httpx.AsyncClient, length: int | None, **headers: str) -> str:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if length is None:
        sent["Upload-Defer-Length"] = "1"
    else:
        sent["Upload-Length"] = str(length)
    response = await client.post("/files/", headers=sent)
    assert response.status_code == 201, response.text
    return response.headers["location"]


async def patch(
    client: httpx.AsyncClient, url: str, offset: int, body: bytes, **headers: str
) -> httpx.Response:
    sent = {"Upload-Offset": str(offset), "Content-Type": OCTETS}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return await client.patch(url, content=body, headers=sent)

"""Small tus client steps over httpx, for tests that need every header in view."""

from __future__ import annotations

import base64
import hashlib
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.tus.conftest import OCTETS


def create(client: httpx.Client, length: int | None, *, metadata: str | None = None, **headers: str) -> str:
    """POST a new upload; returns its absolute URL."""
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if length is None:
        sent.setdefault("Upload-Defer-Length", "1")
    else:
        sent["Upload-Length"] = str(length)
    if metadata is not None:
        sent["Upload-Metadata"] = metadata
    response = client.post("/files/", headers=sent)
    assert response.status_code == 201, response.text
    return response.headers["location"]


def patch(
    client: httpx.Client,
    url: str,
    offset: int,
    body: bytes | Iterator[bytes],
    **headers: str,
) -> httpx.Response:
    sent = {"Upload-Offset": str(offset), "Content-Type": OCTETS}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return client.patch(url, content=body, headers=sent)


def head(client: httpx.Client, url: str) -> httpx.Response:
    return client.head(url)


def offset_of(client: httpx.Client, url: str) -> int:
    response = client.head(url)
    assert response.status_code == 200, (response.status_code, response.headers)
    return int(response.headers["upload-offset"])


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def slow_body(data: bytes, chunk: int = 64 * 1024, pause: float = 0.01) -> Iterator[bytes]:
    """A body that trickles in, so that something else can happen meanwhile."""
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]
        time.sleep(pause)


def wait_for(predicate: object, timeout: float = 20.0, interval: float = 0.02) -> None:
    """Poll a condition (never a timing assertion: the timeout only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError("condition not reached")


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def backdate(path: Path, seconds: float) -> None:
    """Pretend the last write was ``seconds`` ago (expiry is measured from it)."""
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


def tuspy_snippet(
    files_url: str, token: str, path: Path, db: Path, *, pace: float, filename: str, checksum: bool = False
) -> str:
    """A tuspy client for its own process: resumes through FileStorage, one 1 MiB chunk at a
    time, printing its URL and starting offset, then ``done``."""
    return textwrap.dedent(
        f"""
        import time
        from tusclient import client
        from tusclient.storage.filestorage import FileStorage

        tus = client.TusClient({files_url!r}, headers={{"Authorization": "Bearer {token}"}})
        uploader = tus.uploader(
            {str(path)!r}, chunk_size=1024 * 1024, store_url=True, url_storage=FileStorage({str(db)!r}),
            metadata={{"filename": {filename!r}}}, upload_checksum={checksum!r},
        )
        if not uploader.url:
            uploader.set_url(uploader.create_url())
        print(uploader.url, uploader.offset, flush=True)
        while uploader.offset < uploader.stop_at:
            uploader.upload_chunk()
            time.sleep({pace})
        print("done", flush=True)
        """
    )

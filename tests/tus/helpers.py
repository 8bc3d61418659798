"""The tus tests' helpers: the tus-only test server's handle, and small tus client steps
over httpx for tests that need every header in view."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis as sync_redis

from tests.support import ChildProcess, free_port, wait_until

wait_for = wait_until  # the suite's one sync poller, under the name the tus tests use

REPO = Path(__file__).resolve().parents[2]
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


class TusServer:
    """``python -m tests.tus.server`` on a free port; kill -9 and restart keep its files."""

    def __init__(
        self,
        directory: Path,
        redis_url: str,
        *,
        prefix: str | None = None,
        preexec_fn: Callable[[], None] | None = None,
        **knobs: Any,
    ) -> None:
        self.directory = directory
        self.uploads = directory / "uploads"
        self.redis_url = redis_url
        self.prefix = prefix or f"tus-test-{uuid.uuid4().hex[:8]}:"
        self.knobs = knobs
        self.preexec_fn = preexec_fn
        self.port = free_port()
        self.child: ChildProcess | None = None
        self.log_path = directory / f"server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def files_url(self) -> str:
        return self.base_url + "/files/"

    def command(self) -> list[str]:
        args = [
            sys.executable, "-m", "tests.tus.server",
            "--dir", str(self.uploads),
            "--redis-url", self.redis_url,
            "--port", str(self.port),
            "--prefix", self.prefix,
        ]  # fmt: skip
        for key, value in self.knobs.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is not False and value is not None:
                args += [flag, str(value)]
        return args

    def start(self) -> TusServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.child = ChildProcess(
            "tus test server", self.command(), self.log_path, cwd=REPO, preexec_fn=self.preexec_fn
        ).start()
        self.child.wait_http(self.base_url + "/healthz")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.child is not None:
            self.child.kill(sig)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.preexec_fn = None
        self.start()

    def log(self) -> str:
        return "" if self.child is None else self.child.log()

    def client(self, owner: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = dict(TUS)
        if owner is not None:
            headers["Authorization"] = f"Bearer {owner}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0, **kwargs)

    def data_path(self, upload_url: str) -> Path:
        return self.uploads / upload_url.rstrip("/").rsplit("/", 1)[-1]


def finished_runs(server: TusServer, url: str) -> int:
    """How often the test server's finish hook ran for the upload at ``url``."""
    client = sync_redis.Redis.from_url(server.redis_url)
    try:
        return int(client.llen(f"{server.prefix}finished:{url.rsplit('/', 1)[-1]}"))
    finally:
        client.close()


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

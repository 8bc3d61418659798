"""Fixtures for the tus tests: a real tus-only uvicorn server in a child process.

``tus_server`` is shared by a module; ``tus_server_factory`` starts servers with
other knobs (quotas, proxies, several nodes on one directory) for one test.
Both use the suite's private redis-server, with a key prefix of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port

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
        self.process: subprocess.Popen[bytes] | None = None
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
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self.preexec_fn,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tus test server exited:\n{self.log()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"tus test server did not start:\n{self.log()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.stop()
        self.preexec_fn = None
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def client(self, owner: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = dict(TUS)
        if owner is not None:
            headers["Authorization"] = f"Bearer {owner}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0, **kwargs)

    def data_path(self, upload_url: str) -> Path:
        return self.uploads / upload_url.rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def tus_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[TusServer]:
    server = TusServer(tmp_path_factory.mktemp("tus"), redis_url).start()
    yield server
    server.stop()


@pytest.fixture
def tus_server_factory(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., TusServer]]:
    started: list[TusServer] = []

    def make(directory: Path | None = None, **knobs: Any) -> TusServer:
        server = TusServer(directory or tmp_path / f"node{len(started)}", redis_url, **knobs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def owner() -> str:
    return f"owner-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def other_owner() -> str:
    return f"other-{uuid.uuid4().hex[:12]}"

"""Fixtures for the tus tests: a real tus-only uvicorn server in a child process.

``tus_server`` is shared by a module; ``tus_server_factory`` starts servers with
other knobs (quotas, proxies, several nodes on one directory) for one test.
Both use the suite's private redis-server, with a key prefix of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tus.helpers import TusServer


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

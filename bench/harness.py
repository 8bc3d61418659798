"""The bench environment: a private Redis, a real tusd-py, the baseline sink, a user.

Everything runs on loopback as separate processes, as in production; the client
side is httpx. Services are started with the same helpers the tests use.
"""

from __future__ import annotations

import base64
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psutil

from tests.support import ChildProcess, Service, User, free_port, start_service
from tusd_py.embedded_redis import RedisProcess

MiB = 1024 * 1024
READ_SIZE = MiB
FINAL = {"completed", "failed", "cancelled"}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def file_chunks(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Stream ``length`` bytes of ``path`` from ``start`` in 1 MiB reads."""
    remaining = path.stat().st_size - start if length is None else length
    with path.open("rb") as source:
        source.seek(start)
        while remaining > 0:
            chunk = source.read(min(READ_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


def text_file(directory: Path, size: int) -> Path:
    """A text file of ``size`` bytes (mixed case, some non-ASCII), made once."""
    line = "The quick brown fox jumps over the lazy dog; Größe, déjà vu. 0123456789\n".encode()
    return _repeated_line(directory / f"text-{size}.txt", line, size)


def ascii_file(directory: Path, size: int) -> Path:
    """An ASCII text file of ``size`` bytes (mixed case): what ``uppercase``'s fast path takes."""
    line = b"The quick brown fox jumps over the lazy dog; 0123456789 ABC xyz.\n"
    return _repeated_line(directory / f"ascii-{size}.txt", line, size)


def _repeated_line(path: Path, line: bytes, size: int) -> Path:
    """``path`` holding ``line`` repeated up to ``size`` bytes, unless it already does."""
    if not path.exists() or path.stat().st_size != size:
        block = line * (MiB // len(line) + 1)
        with path.open("wb") as out:
            written = 0
            while written < size:
                piece = block[: size - written]
                out.write(piece)
                written += len(piece)
    return path


def metadata_header(metadata: dict[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in metadata.items())


def drop_files(directory: Path) -> None:
    """Remove the regular files a round wrote into ``directory`` (not its subfolders).

    Every contender's round is followed by this, so every round writes into page cache
    that the previous round freed: on this VM, writing into pages never touched before
    costs a third more (a sink that keeps its files falls from ~390 to ~280 MB/s after
    about 1.3 GB), which would favour whichever contender runs after a cleanup.
    """
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                with suppress(FileNotFoundError):
                    os.unlink(entry.path)


class PeakRSS:
    """Samples the RSS of processes chosen by ``pick`` every few milliseconds, in a thread:
    the peak of one of them, or with ``together`` of their sum."""

    def __init__(
        self, pick: Callable[[], list[psutil.Process]], interval: float = 0.005, *, together: bool = False
    ) -> None:
        self._pick = pick
        self._together = together
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = []
            for process in self._pick():
                with suppress(psutil.Error):
                    sizes.append(process.memory_info().rss)
            self.peak = max(self.peak, sum(sizes) if self._together else max(sizes, default=0))
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class BenchEnv:
    workdir: Path
    redis: RedisProcess
    service: Service
    sink_url: str
    sink: ChildProcess
    user: User
    data_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.workdir / "inputs"
        self.data_dir.mkdir(exist_ok=True)

    @property
    def sink_dir(self) -> Path:
        return self.workdir / "sink"

    @property
    def base_url(self) -> str:
        return self.service.base_url

    @property
    def headers(self) -> dict[str, str]:
        return {**self.user.headers, "Tus-Resumable": "1.0.0"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=300)

    def async_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        return httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=300, limits=limits)

    def create_upload(self, client: httpx.Client, length: int, operation: str = "uppercase") -> str:
        response = client.post(
            "/files/",
            headers={
                "Upload-Length": str(length),
                "Upload-Metadata": metadata_header({"filename": "bench.txt", "operation": operation}),
            },
        )
        response.raise_for_status()
        return response.headers["location"]

    def upload_file(
        self, client: httpx.Client, path: Path, chunk_size: int, operation: str = "uppercase"
    ) -> tuple[str, float]:
        """Upload ``path`` in PATCHes of ``chunk_size``; (task id, time the last PATCH was answered)."""
        size = path.stat().st_size
        location = self.create_upload(client, size, operation)
        offset = 0
        while offset < size:
            length = min(chunk_size, size - offset)
            response = client.patch(
                location,
                content=file_chunks(path, offset, length),
                headers={
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(length),
                },
            )
            if response.status_code != 204:
                raise RuntimeError(f"PATCH answered {response.status_code}: {response.text}")
            offset = int(response.headers["upload-offset"])
        return location.rsplit("/", 1)[-1], time.time()

    def wait_task(self, client: httpx.Client, task_id: str, timeout: float = 600) -> dict[str, object]:
        """Poll until the task ends. Figures come from the task's own timestamps, so a slow
        poll costs no accuracy, and a fast one would steal CPU from the worker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = client.get(f"/tasks/{task_id}").json()
            if task["status"] in FINAL:
                if task["status"] != "completed":
                    raise RuntimeError(f"task {task_id} ended {task['status']}: {task['error']}")
                return task
            time.sleep(0.2)
        raise TimeoutError(f"task {task_id} did not finish in {timeout}s")

    def worker_children(self) -> list[psutil.Process]:
        found = []
        for worker in self.service.workers:
            with suppress(psutil.Error):
                found += psutil.Process(worker.pid).children(recursive=True)
        return found

    def api_processes(self) -> list[psutil.Process]:
        """``tusd-py api`` and the API processes it started (one per core by default)."""
        parent = psutil.Process(self.service.api.pid)
        return [parent, *parent.children()]

    def api_shape(self) -> str:
        """How the API runs: "1 API process", or "N API processes + parent"."""
        count = len(self.api_processes())
        return "1 API process" if count == 1 else f"{count - 1} API processes + parent"

    def set_workers(self, count: int) -> None:
        while len(self.service.workers) > count:
            self.service.workers.pop().stop()
        while len(self.service.workers) < count:
            self.service.start_worker()
        time.sleep(1.0)  # let new workers connect and start polling


@contextmanager
def bench_env(workers: int = 1) -> Iterator[BenchEnv]:
    workdir = Path(tempfile.mkdtemp(prefix="tusd-bench-"))
    redis = RedisProcess(workdir / "redis", port=free_port(), persistent=False)
    redis_url = redis.start()
    service = start_service(
        workdir / "service",
        redis_url,
        workers=workers,
        log_level="warning",
        max_pending_uploads="10000",
        max_pending_bytes=str(1 << 40),
        event_log_size="10000",
        max_event_streams="100",
        api_processes="0",  # the default: one per core
    )
    sink_port = free_port()
    (workdir / "sink").mkdir()
    sink = ChildProcess(
        "sink",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.sink:app",
            "--port",
            str(sink_port),
            "--log-level",
            "warning",
        ],
        workdir / "sink.log",
        env={"BENCH_SINK_DIR": str(workdir / "sink")},
    ).start()
    sink_url = f"http://127.0.0.1:{sink_port}"
    try:
        _wait_for(sink_url)
        yield BenchEnv(workdir, redis, service, sink_url, sink, service.register())
    finally:
        sink.stop()
        service.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.put(url, content=b"")
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")

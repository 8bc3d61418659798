"""The suite's harness: child processes, pollers, Redis databases, a live tusd-py service.

Nothing here is mocked: services are started with ``python -m tusd_py ROLE``
against the suite's private redis-server and reached over loopback. Tests import
what they need from here (or from a package's helpers module), never from a
``conftest.py`` or another test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from redis import Redis as SyncRedis

T = TypeVar("T")

METRICS_TOKEN = "metrics-token-for-the-suite-0123456789"
"""The suite's `TUSD_PY_METRICS_TOKEN` for the shared service."""
FAST_ARGON2 = {"TUSD_PY_ARGON2_PROFILE": "fast"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class ChildProcess:
    """One child process of a test: start, wait until it is ready, stop with escalation, logs.

    The tus test server, the processing workers, ``tusd-py api``/``worker``/``serve`` all
    run through this handle. The child gets a session of its own (so a signal we send to
    its group reaches its children too, and the terminal's Ctrl-C does not), writes
    stdout and stderr to ``log_path``, and inherits ``os.environ`` under ``env`` (unless
    ``inherit_env`` is false: then ``env`` is all it gets).
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
        inherit_env: bool = True,
    ) -> None:
        self.name = name
        self.inherit_env = inherit_env
        self.command = command
        self.log_path = log_path
        self.env = dict(env or {})
        self.cwd = cwd
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env={**(os.environ if self.inherit_env else {}), "PYTHONUNBUFFERED": "1", **self.env},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self.preexec_fn,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 20.0, what: str = "ready") -> None:
        """Poll ``ready()`` until it holds; fail at once (with the log) if the child exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early ({self.returncode}):\n{self.log()}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} was not {what} within {timeout} s:\n{self.log()}")

    def wait_http(self, url: str, timeout: float = 20.0) -> None:
        """Wait until ``GET url`` answers 200."""

        def answers() -> bool:
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_ready(answers, timeout, what=f"answering at {url}")

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child alone (not its group), if it still runs."""
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit; its status (``subprocess.TimeoutExpired`` past ``timeout``)."""
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) and wait for the exit."""
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, sig)
            self.process.wait(15)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole session if it lingers; the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""


def tusd_py_process(
    role: str, env: Mapping[str, str], log_path: Path, *, inherit_env: bool = True
) -> ChildProcess:
    """``python -m tusd_py ROLE`` (``serve``, ``api`` or ``worker``) with ``env``."""
    command = [sys.executable, "-m", "tusd_py", role]
    return ChildProcess(role, command, log_path, env=env, inherit_env=inherit_env)


def wait_until(
    predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02, what: str = "condition"
) -> None:
    """Poll a condition (never a timing assertion: the timeout only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s")


async def async_wait_until(
    predicate: Callable[[], Awaitable[T | None]],
    within: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Await ``predicate()`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {within} s")


class RedisDatabases:
    """Hands out the suite Redis's spare databases (1-14), each emptied before use.

    Database 0 holds the shared ``live`` service and the tus servers (which use key
    prefixes); 15 is the contract test's. A database goes back to the pool when the
    test that took it ends, so no file numbers databases of its own.
    """

    FIRST, LAST = 1, 14

    def __init__(self, redis_url: str) -> None:
        self.base = redis_url.rsplit("/", 1)[0]
        self.free = list(range(self.FIRST, self.LAST + 1))

    def acquire(self) -> str:
        if not self.free:
            raise RuntimeError("every spare Redis database is taken; release some or raise LAST")
        url = f"{self.base}/{self.free.pop(0)}"
        with SyncRedis.from_url(url) as client:
            client.flushdb()
        return url

    def release(self, url: str) -> None:
        self.free.append(int(url.rsplit("/", 1)[1]))


@dataclass
class Service:
    """An API (and optionally a worker) started for a test, and how to reach it."""

    env: dict[str, str]
    data_dir: Path
    base_url: str
    api: ChildProcess
    workers: list[ChildProcess] = field(default_factory=list)

    def start_worker(self) -> ChildProcess:
        index = len(self.workers)
        worker = tusd_py_process("worker", self.env, self.data_dir / f"worker{index}.log").start()
        self.workers.append(worker)
        return worker

    def restart_api(self) -> None:
        self.api = tusd_py_process("api", self.env, self.api.log_path).start()
        self.api.wait_http(self.base_url + "/healthz")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.api.stop()

    def client(self, user: User | None = None, **kwargs: object) -> httpx.Client:
        headers = user.headers if user else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def register(self, username: str | None = None, password: str = "correct horse battery") -> User:
        username = username or unique_name()
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            created = client.post("/auth/register", json={"username": username, "password": password})
            assert created.status_code == 201, created.text
            login = client.post("/auth/login", json={"username": username, "password": password})
            assert login.status_code == 200, login.text
        tokens = login.json()
        return User(id=created.json()["id"], username=username, password=password, tokens=tokens)


@dataclass
class User:
    id: str
    username: str
    password: str
    tokens: dict[str, object]

    @property
    def access_token(self) -> str:
        return str(self.tokens["access_token"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def start_service(data_dir: Path, redis_url: str, *, workers: int = 0, **settings: str) -> Service:
    """Start an API (and ``workers`` workers) with TUSD_PY_* overrides in ``settings``.

    The API runs as one process unless ``api_processes`` says otherwise: a test of one
    node's behaviour (its connection caps, its log) should not depend on the machine's
    cores. ``tests/test_api_processes.py``, ``serve`` and the wheel's tests run the default.
    """
    port = free_port()
    env = {
        "TUSD_PY_DATA_DIR": str(data_dir),
        "TUSD_PY_REDIS_URL": redis_url,
        "TUSD_PY_HOST": "127.0.0.1",
        "TUSD_PY_PORT": str(port),
        "TUSD_PY_LOG_LEVEL": "warning",
        "TUSD_PY_API_PROCESSES": "1",
        **FAST_ARGON2,
        **{f"TUSD_PY_{key.upper()}": value for key, value in settings.items()},
    }
    base_url = f"http://127.0.0.1:{port}"
    api = tusd_py_process("api", env, data_dir / "api.log").start()
    service = Service(env=env, data_dir=data_dir, base_url=base_url, api=api)
    try:
        api.wait_http(base_url + "/healthz")
        for _ in range(workers):
            service.start_worker()
    except BaseException:
        service.stop()
        raise
    return service


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``target`` in a thread; its result (or exception) lands in the list."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(target())
        except Exception as error:
            box.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box

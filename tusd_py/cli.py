"""``tusd-py``: run the service (all of it, or one role) and upload files."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from tusd_py.embedded_redis import RedisNotFound, RedisProcess, die_with_parent
from tusd_py.settings import Settings, SettingsError, documented_variables

logger = logging.getLogger("tusd_py.cli")

DESCRIPTION = """\
tusd-py: resumable uploads (tus 1.0.0) and background processing.

  serve    everything on one machine: an embedded redis-server (unless
           TUSD_PY_REDIS_URL is set), the API on TUSD_PY_HOST:TUSD_PY_PORT and
           one worker. Ctrl-C or SIGTERM stops all of them.
  api      the HTTP API alone, against TUSD_PY_REDIS_URL (run several behind
           a load balancer, sharing TUSD_PY_DATA_DIR).
  worker   one processing worker alone, against TUSD_PY_REDIS_URL (run as
           many as you like; each runs TUSD_PY_MAX_JOBS tasks at once).
  upload   upload files with the tus protocol, resumably, with a progress bar.
"""

RESTART_DELAY = 1.0
STOP_TIMEOUT_SLACK = 10.0


def _environment_help() -> str:
    lines = ["configuration (environment variables):"]
    for name, default, doc in documented_variables():
        lines.append(f"  {name} (default {default})\n      {doc}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tusd-py",
        description=DESCRIPTION,
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    roles = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    roles.add_parser("serve", help="run redis (embedded), the API and a worker together")
    roles.add_parser("api", help="run the HTTP API against TUSD_PY_REDIS_URL")
    roles.add_parser("worker", help="run one processing worker against TUSD_PY_REDIS_URL")
    from tusd_py.upload_cli import add_upload_arguments

    add_upload_arguments(roles.add_parser("upload", help="upload files (resumable, with progress)"))
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_api(settings: Settings) -> None:
    import uvicorn

    from tusd_py.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=settings.trust_proxy,
        server_header=False,
        timeout_graceful_shutdown=5,
    )


def run_worker(settings: Settings) -> None:
    from processing.worker import run_worker as run_processing_worker
    from tusd_py.wiring import processing_config

    run_processing_worker(processing_config(settings))


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
            self.redis = RedisProcess(self.settings.data_dir / "redis", binary=self.settings.redis_server)
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


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"tusd-py: {exc}")
    configure_logging(settings.log_level)
    if args.command == "upload":
        from tusd_py.upload_cli import run_upload

        sys.exit(run_upload(args))
    if args.command in ("api", "worker") and settings.redis_url is None:
        sys.exit(f"tusd-py {args.command}: set TUSD_PY_REDIS_URL (only 'tusd-py serve' embeds a Redis)")
    try:
        if args.command == "serve":
            sys.exit(Supervisor(settings).run())
        if args.command == "api":
            run_api(settings)
        else:
            run_worker(settings)
    except RedisNotFound as exc:
        sys.exit(f"tusd-py: {exc}")
    except KeyboardInterrupt:
        pass

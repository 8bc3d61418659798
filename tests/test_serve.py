"""`tusd-py serve`: embedded Redis, API and worker in one command, stopped cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import FAST_ARGON2, ServiceProcess, free_port

PASSWORD = "correct horse battery"


def start_serve(data_dir: Path, port: int) -> tuple[ServiceProcess, str]:
    env = {
        "TUSD_PY_DATA_DIR": str(data_dir),
        "TUSD_PY_PORT": str(port),
        "TUSD_PY_LOG_LEVEL": "warning",
        "TUSD_PY_SHUTDOWN_GRACE": "1",
        **FAST_ARGON2,
    }
    environ = {k: v for k, v in os.environ.items() if k != "TUSD_PY_REDIS_URL"}
    service = ServiceProcess("serve", {**environ, **env}, data_dir / "serve.log")
    service.start()
    base_url = f"http://127.0.0.1:{port}"
    service.wait_http(base_url + "/readyz", timeout=30)
    return service, base_url


def family(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_keeps_users_across_restarts_and_leaves_no_orphans(tmp_path: Path, stop_signal: int) -> None:
    port = free_port()
    serve, base_url = start_serve(tmp_path, port)
    try:
        children = family(serve.pid)
        names = sorted(child.name() for child in children)
        assert "redis-server" in names, names
        assert len(children) >= 3  # redis-server, api, worker
        # The embedded Redis listens on a unix socket in the data dir, not on TCP.
        redis_child = next(c for c in children if c.name() == "redis-server")
        assert not [conn for conn in redis_child.net_connections(kind="inet") if conn.status == "LISTEN"]
        assert (tmp_path / "redis" / "redis.sock").exists()

        registered = httpx.post(
            f"{base_url}/auth/register", json={"username": "survivor", "password": PASSWORD}
        )
        assert registered.status_code == 201

        serve.kill(stop_signal)
        assert serve.process is not None and serve.process.returncode == 0
        assert not [
            child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        ]
    finally:
        serve.stop()

    serve, base_url = start_serve(tmp_path, port)
    try:
        login = httpx.post(f"{base_url}/auth/login", json={"username": "survivor", "password": PASSWORD})
        assert login.status_code == 200
        me = httpx.get(
            f"{base_url}/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
        )
        assert me.json()["id"] == registered.json()["id"]
    finally:
        serve.stop()


def test_serve_killed_with_9_takes_its_children_along(tmp_path: Path) -> None:
    serve, _ = start_serve(tmp_path, free_port())
    try:
        children = family(serve.pid)
        assert len(children) >= 3
        serve.kill(signal.SIGKILL)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], [child.name() for child in alive]
    finally:
        serve.stop()


def test_help_explains_roles_and_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tusd_py", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    for word in ("serve", "api", "worker", "upload", "TUSD_PY_REDIS_URL", "TUSD_PY_JOB_TIMEOUT"):
        assert word in result.stdout


def test_api_role_needs_a_redis_url() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "TUSD_PY_REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "tusd_py", "api"], env=environ, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "TUSD_PY_REDIS_URL" in result.stderr


def test_serve_without_a_redis_binary_says_how_to_get_one(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "TUSD_PY_REDIS_URL"}
    environ.update(PATH=str(tmp_path), TUSD_PY_DATA_DIR=str(tmp_path / "data"), TUSD_PY_REDIS_SERVER="path")
    result = subprocess.run(
        [sys.executable, "-m", "tusd_py", "serve"], env=environ, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "redis-server" in result.stderr and "TUSD_PY_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr

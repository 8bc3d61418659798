"""`tusd-py serve`: embedded Redis, API and worker in one command, stopped cleanly."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import FAST_ARGON2, ChildProcess, free_port, tusd_py_process, wait_until
from tusd_py.embedded_redis import RedisProcess

PASSWORD = "correct horse battery"


def start_serve(data_dir: Path, port: int, **settings: str) -> tuple[ChildProcess, str]:
    env = {
        "TUSD_PY_DATA_DIR": str(data_dir),
        "TUSD_PY_PORT": str(port),
        "TUSD_PY_LOG_LEVEL": "warning",
        "TUSD_PY_SHUTDOWN_GRACE": "1",
        **FAST_ARGON2,
        **{f"TUSD_PY_{key.upper()}": value for key, value in settings.items()},
    }
    environ = {k: v for k, v in os.environ.items() if k != "TUSD_PY_REDIS_URL"}
    service = tusd_py_process("serve", {**environ, **env}, data_dir / "serve.log", inherit_env=False)
    service.start()
    base_url = f"http://127.0.0.1:{port}"
    service.wait_http(base_url + "/readyz", timeout=30)
    return service, base_url


def family(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def role_processes(pid: int, role: str) -> list[psutil.Process]:
    """The live ``python -m tusd_py ROLE`` children of ``pid``."""
    found = []
    for child in family(pid):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and child.cmdline()[-1:] == [role]:
                found.append(child)
        except psutil.Error:
            continue
    return found


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
        assert serve.returncode == 0
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


def run_serve(tmp_path: Path, timeout: float = 60, **settings: str) -> subprocess.CompletedProcess[str]:
    """``tusd-py serve`` to its end, with ``settings`` (TUSD_PY_REDIS_URL only if given)."""
    environ = {k: v for k, v in os.environ.items() if k != "TUSD_PY_REDIS_URL"}
    environ.update(TUSD_PY_DATA_DIR=str(tmp_path / "data"), TUSD_PY_LOG_LEVEL="warning", **FAST_ARGON2)
    environ.update({f"TUSD_PY_{key.upper()}": value for key, value in settings.items()})
    command = [sys.executable, "-m", "tusd_py", "serve"]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=timeout)


def test_serve_on_a_taken_port_says_which_setting_to_change(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve(tmp_path, port=str(port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"tusd-py serve: port {port} on 127.0.0.1 is already in use; set TUSD_PY_PORT to a free port"
    ]
    assert not (tmp_path / "data" / "redis").exists(), "nothing should have been started"


def test_serve_with_an_unparsable_redis_url_names_it(tmp_path: Path) -> None:
    result = run_serve(tmp_path, port=str(free_port()), redis_url="redis://localhost:sixthree/0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tusd-py: TUSD_PY_REDIS_URL="), lines
    assert "cannot be parsed" in lines[0]


def test_serve_with_a_refused_redis_password_says_so(tmp_path: Path, redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://nobody:wrong-password@")
    result = run_serve(tmp_path, port=str(free_port()), redis_url=url)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("tusd-py serve: Redis at redis://nobody:***@127.0.0.1:")
    assert "refused the password" in lines[0] and "TUSD_PY_REDIS_URL" in lines[0]
    assert "wrong-password" not in result.stderr


def _start_slow_task(base_url: str) -> tuple[dict[str, str], str]:
    """A user and an upload whose task (``fault-slow``, about 2 s) is running now."""
    creds = {"username": "ctrl_c_user", "password": PASSWORD}
    assert httpx.post(f"{base_url}/auth/register", json=creds).status_code == 201
    token = httpx.post(f"{base_url}/auth/login", json=creds).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = b"x" * 50_000
    created = httpx.post(
        f"{base_url}/files/",
        content=body,
        headers={
            **headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(body)),
            "Content-Type": "application/offset+octet-stream",
            "Upload-Metadata": "operation " + base64.b64encode(b"fault-slow").decode(),
        },
    )
    assert created.status_code == 201, created.text
    task_id = created.headers["location"].rstrip("/").rsplit("/", 1)[-1]

    def running() -> bool:
        task = httpx.get(f"{base_url}/tasks/{task_id}", headers=headers).json()
        return task["status"] == "processing" and task["progress"] > 0

    wait_until(running, timeout=30, what="the task running")
    return headers, task_id


def test_ctrl_c_stops_api_and_worker_before_redis_and_costs_no_try(tmp_path: Path) -> None:
    """SIGINT to serve's whole process group, as a terminal's Ctrl-C sends it."""
    port = free_port()
    serve, base_url = start_serve(tmp_path, port, shutdown_grace="0", enable_fault_operations="true")
    try:
        headers, task_id = _start_slow_task(base_url)
        redis_pid = next(c.pid for c in family(serve.pid) if c.name() == "redis-server")
        assert os.getsid(redis_pid) == redis_pid  # a session of its own: no terminal signal reaches it
        os.killpg(os.getpgid(serve.pid), signal.SIGINT)
        assert serve.wait(60) == 0
    finally:
        serve.stop()
    redis_log = (tmp_path / "redis" / "redis.log").read_text()
    assert "SIGINT" not in redis_log and "Received SIGTERM" in redis_log
    assert "restarting" not in serve.log() and "Traceback" not in serve.log()

    serve, base_url = start_serve(tmp_path, port, enable_fault_operations="true")
    try:

        def completed() -> dict[str, object] | None:
            task = httpx.get(f"{base_url}/tasks/{task_id}", headers=headers).json()
            return task if task["status"] == "completed" else None

        wait_until(completed, timeout=60, what="the requeued task completing")
        task = httpx.get(f"{base_url}/tasks/{task_id}", headers=headers).json()
        assert task["attempts"] == 1, task
    finally:
        serve.stop()


def test_a_crashed_child_is_restarted_and_a_crash_loop_ends_serve(tmp_path: Path) -> None:
    serve, base_url = start_serve(tmp_path, free_port(), log_level="info")

    def logged(text: str) -> bool:
        return text in serve.log_path.read_text(errors="replace")

    try:
        [api] = role_processes(serve.pid, "api")
        wait_until(lambda: logged(f"api is up (pid {api.pid})"), timeout=30)
        api.kill()  # SIGKILL after a good start: restarted
        wait_until(lambda: logged("api exited with status -9; restarting it"), timeout=30)
        serve.wait_http(base_url + "/readyz", timeout=60)

        for _ in range(5):  # the worker, killed again each time it has started well
            wait_until(lambda: len(role_processes(serve.pid, "worker")) == 1, timeout=60)
            worker = role_processes(serve.pid, "worker")[0]
            wait_until(lambda w=worker: logged(f"worker is up (pid {w.pid})"), timeout=30)
            worker.kill()
            worker.wait(10)
        assert serve.wait(60) == 1
    finally:
        serve.stop()
    assert logged("tusd-py serve: the worker crashed 5 times within 60 s")


def test_serve_waits_for_a_redis_that_does_not_answer_yet(tmp_path: Path) -> None:
    redis_port = free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "TUSD_PY_REDIS_URL"}
    env = {
        **environ,
        "TUSD_PY_DATA_DIR": str(tmp_path / "data"),
        "TUSD_PY_PORT": str(port),
        "TUSD_PY_REDIS_URL": url,
        "TUSD_PY_LOG_LEVEL": "warning",
        **FAST_ARGON2,
    }
    serve = tusd_py_process("serve", env, tmp_path / "serve.log", inherit_env=False).start()
    server = RedisProcess(tmp_path / "redis", port=redis_port, persistent=False)
    try:
        serve.wait_ready(lambda: "does not answer" in serve.log(), timeout=30, what="waiting for Redis")
        assert role_processes(serve.pid, "api") == []  # nothing starts before Redis answers
        server.start()
        serve.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        log = serve.log()
        assert log.count("does not answer") == 1, log  # one line per change, not one per try
        assert "answers again" in log
    finally:
        serve.stop()
        server.stop()


def test_api_on_a_taken_port_says_which_setting_to_change(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environ = {**os.environ, "TUSD_PY_REDIS_URL": redis_url, "TUSD_PY_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "tusd_py", "api"], env=environ, capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"tusd-py api: port {port} on 127.0.0.1 is already in use; set TUSD_PY_PORT to a free port"
    ]

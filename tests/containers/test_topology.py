"""The image and docker-compose.yml, built and run for real with podman and podman-compose.

Run by ``make test-containers`` (tests/containers/run.sh, which first makes the local base
images). One test walks the whole life of the topology, because bringing it up costs
seconds and every step depends on the one before: build, up, register, upload with tuspy
through the API's published port, a worker container completes the task, download, scale
the workers to two, and ``down`` leaves nothing running.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tusclient import client as tus

from tests.support import free_port, unique_name

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IMAGE = "localhost/tusd-py:test"
PODMAN_COMPOSE = [sys.executable, "-m", "podman_compose"]
FINAL = {"completed", "failed", "cancelled"}


def _preflight() -> None:
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.insert(0, "root")
    if missing:
        reason = f"container tests need {', '.join(missing)} (see tests/containers/run.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def free_port_not_6379() -> int:
    while (port := free_port()) == 6379:
        pass
    return port


@dataclass
class Topology:
    project: str
    env: dict[str, str]
    api_url: str
    redis_port: int

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        command = [
            *PODMAN_COMPOSE,
            "-p",
            self.project,
            "-f",
            str(ROOT / "docker-compose.yml"),
            "-f",
            str(HERE / "compose.test.yml"),
            *args,
        ]
        done = run(command, env=self.env, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done

    def containers(self, *, all_states: bool = True, service: str | None = None) -> list[dict]:
        args = ["ps", "--format", "json", "--filter", f"label=com.docker.compose.project={self.project}"]
        if all_states:
            args.append("--all")
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        return json.loads(podman(*args).stdout or "[]")

    def running(self, service: str) -> list[str]:
        return sorted(
            c["Names"][0]
            for c in self.containers(all_states=False, service=service)
            if c["State"] == "running"
        )

    def logs(self, name: str) -> str:
        done = podman("logs", name)
        return done.stdout + done.stderr


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    done = run(["podman", *args], timeout=120)
    assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr[-2000:]}"
    return done


def timed(label: str, started: float) -> None:
    print(f"\n  {label}: {time.monotonic() - started:.1f} s", flush=True)


def wait_until(what: str, predicate, within: float = 120.0, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {within} s; last: {last!r}")


def ready(api_url: str) -> bool:
    return httpx.get(api_url + "/readyz", timeout=5).status_code == 200


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    _preflight()
    redis_port, api_port = free_port_not_6379(), free_port_not_6379()
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(HERE / "containers.conf"),
        "BUILDAH_FORMAT": "docker",  # OCI images drop HEALTHCHECK
        "TUSD_PY_JWT_SECRET": secrets.token_hex(32),
        "TEST_REDIS_PORT": str(redis_port),
        "TEST_API_PORT": str(api_port),
    }
    os.environ["CONTAINERS_CONF"] = env["CONTAINERS_CONF"]
    project = "tusdpy" + secrets.token_hex(4)
    topo = Topology(project, env, f"http://127.0.0.1:{api_port}", redis_port)
    try:
        yield topo
    finally:
        # Whatever happened: stop the project and drop its volumes.
        run([*PODMAN_COMPOSE, "-p", project, "-f", str(ROOT / "docker-compose.yml"),
             "-f", str(HERE / "compose.test.yml"), "down"], env=env, timeout=300)  # fmt: skip
        for volume in ("files", "redis-data"):
            run(["podman", "volume", "rm", "--force", f"{project}_{volume}"], timeout=60)


def register(api_url: str, username: str, password: str) -> dict[str, str]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        created = client.post("/auth/register", json={"username": username, "password": password})
        assert created.status_code == 201, created.text
    return login(api_url, username, password)


def login(api_url: str, username: str, password: str) -> dict[str, str]:
    answer = httpx.post(
        api_url + "/auth/login", json={"username": username, "password": password}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def upload_and_process(topo: Topology, headers: dict[str, str], data: bytes) -> str:
    """Upload with tuspy through the published port; wait for the worker; check the result."""
    client = tus.TusClient(topo.api_url + "/files/", headers=headers)
    uploader = client.uploader(
        file_stream=io.BytesIO(data),
        chunk_size=512 * 1024,
        metadata={"filename": "notes.txt", "operation": "uppercase"},
    )
    uploader.upload()
    task_id = uploader.url.rstrip("/").rsplit("/", 1)[1]
    assert uploader.url.startswith(topo.api_url + "/files/")

    with httpx.Client(base_url=topo.api_url, headers=headers, timeout=30) as api:

        def final() -> dict | None:
            task = api.get(f"/tasks/{task_id}").json()
            return task if task["status"] in FINAL else None

        task = wait_until(f"task {task_id} finishing", final, within=120)
        assert task["status"] == "completed", task
        assert task["size"] == len(data) and task["attempts"] == 1, task
        result = api.get(task["result_url"])
        assert result.status_code == 200
        assert result.content == data.upper()
    return task_id


@pytest.mark.timeout(900)  # a cold image build downloads every wheel
def test_compose_topology_builds_runs_scales_and_stops(topology: Topology) -> None:
    topo = topology

    # Build the image the way compose builds it for users (the test override only
    # passes the local bases as build arguments); its node stage brings Uppy.
    started = time.monotonic()
    topo.compose("build", "api")
    timed("image build (podman-compose build api)", started)

    inspected = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    assert inspected["Config"]["User"] == "10001:10001"
    assert inspected["Config"]["Entrypoint"] == ["tusd-py"]
    assert inspected["Healthcheck"]["Test"][:2] == ["CMD", "python"]
    print(f"  image size: {inspected['Size'] / 1e6:.0f} MB", flush=True)

    # Up. podman 4.3 runs no health checks without systemd and podman-compose ignores
    # `condition: service_healthy`, so the test waits on /readyz itself.
    started = time.monotonic()
    topo.compose("up", "-d")
    wait_until("the API ready", lambda: ready(topo.api_url))
    timed("up -d until /readyz answers 200", started)
    assert topo.running("redis") and topo.running("api") and topo.running("worker")
    (worker_1,) = topo.running("worker")
    wait_until("the worker started", lambda: "Starting worker" in topo.logs(worker_1))

    # The health checks Docker runs, run once by hand: each answers 0.
    for service in ("redis", "api", "worker"):
        for name in topo.running(service):
            check = run(["podman", "healthcheck", "run", name], env=topo.env, timeout=60)
            assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"

    # Redis runs as docker-compose.yml says: append-only and never evicting.
    redis_cli = ["podman", "exec", topo.running("redis")[0], "redis-cli", "-p", str(topo.redis_port)]
    assert run([*redis_cli, "config", "get", "appendonly"]).stdout.split() == ["appendonly", "yes"]
    assert run([*redis_cli, "config", "get", "maxmemory-policy"]).stdout.split() == [
        "maxmemory-policy",
        "noeviction",
    ]

    # The web console and its Uppy build, from the image's package data.
    page = httpx.get(f"{topo.api_url}/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    uppy = httpx.get(f"{topo.api_url}/console/vendor/uppy.min.mjs", timeout=30)
    assert uppy.status_code == 200 and len(uppy.content) > 100_000, uppy.status_code

    # A user, a tuspy upload through the published port, the worker container's task.
    username, password = unique_name(), "correct horse battery"
    headers = register(topo.api_url, username, password)
    data = b"hello from a container test\n" * 40_000  # ~1.1 MB, three PATCHes
    task_id = upload_and_process(topo, headers, data)
    assert task_id in topo.logs(worker_1), "the worker container's log does not name the task"

    # Two workers. The user and the first task survive (Redis and its volume stay).
    started = time.monotonic()
    topo.compose("up", "-d", "--scale", "worker=2")
    wait_until("two workers running", lambda: len(topo.running("worker")) == 2)
    wait_until("the API ready again", lambda: ready(topo.api_url))
    workers = topo.running("worker")
    for name in workers:
        wait_until(f"{name} started", lambda name=name: "Starting worker" in topo.logs(name))
    timed("scale to two workers", started)
    headers = login(topo.api_url, username, password)
    first = httpx.get(f"{topo.api_url}/tasks/{task_id}", headers=headers, timeout=30)
    assert first.status_code == 200 and first.json()["status"] == "completed"
    later = [upload_and_process(topo, headers, data[: 1000 * (n + 1)]) for n in range(4)]
    for later_id in later:
        assert any(later_id in topo.logs(name) for name in workers), later_id

    # Down: no container of the project is left, running or stopped, and the ports are free.
    started = time.monotonic()
    # podman-compose 1.6's `down` stops only the compose file's containers, not the second
    # replica `--scale` made (docker compose's `down` removes every replica); its
    # `--remove-orphans` takes every container of the project.
    topo.compose("down", "--remove-orphans")
    timed("down", started)
    assert topo.containers(all_states=True) == []
    assert port_closed(int(topo.env["TEST_API_PORT"])) and port_closed(topo.redis_port)

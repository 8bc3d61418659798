"""``tusd-py api`` as several processes on one port (``tusd_py.api_nodes``), for real:
the real command, the suite's Redis, httpx clients on fresh connections, kill -9."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from tests.support import METRICS_TOKEN, Service, wait_until
from tests.tus.helpers import OCTETS, TUS
from tusd_py.api_nodes import METRICS_PREFIX, NODE_READY_AFTER, metrics_dir
from tusd_py.settings import AUTO_API_PROCESSES_MAX, Settings
from tusd_py.supervisor import TICK

KiB = 1024


def nodes(service: Service) -> list[psutil.Process]:
    return psutil.Process(service.api.pid).children()


def fresh(service: Service, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request on a connection of its own: the kernel picks the process by the
    connection's ports, so a run of these reaches every process."""
    with httpx.Client(base_url=service.base_url, timeout=30.0) as client:
        return client.request(method, path, **kwargs)  # type: ignore[arg-type]


def requests_counted(service: Service, route: str) -> float:
    with service.client() as client:
        text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    pattern = rf'^tusd_http_requests_total{{method="GET",route="{re.escape(route)}",status="200"}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


def test_the_default_is_one_process_per_usable_cpu() -> None:
    usable = len(os.sched_getaffinity(0))
    assert Settings().api_process_count == max(1, min(AUTO_API_PROCESSES_MAX, usable))
    assert Settings(api_processes=3).api_process_count == 3


def test_processes_share_the_port_serve_one_upload_between_them_and_count_together(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(api_processes="2", metrics_token=METRICS_TOKEN)
    children = nodes(service)
    assert len(children) == 2
    assert sorted(child.cmdline()[-3] for child in children) == ["0", "1"]  # --node SLOT
    for _ in range(40):
        assert fresh(service, "GET", "/healthz").status_code == 200
    assert requests_counted(service, "/healthz") == 40 + 1  # and start_service's own look
    (shared,) = {Path(child.environ()["PROMETHEUS_MULTIPROC_DIR"]) for child in children}
    assert {f"counter_{child.pid}.db" for child in children} <= {p.name for p in shared.iterdir()}

    user = service.register()
    data = os.urandom(64 * KiB)
    created = fresh(
        service, "POST", "/files/", headers={**user.headers, **TUS, "Upload-Length": str(len(data))}
    )
    assert created.status_code == 201
    url = "/files/" + created.headers["location"].rsplit("/", 1)[-1]
    for offset in range(0, len(data), 4 * KiB):  # each PATCH and HEAD may meet either process
        headers = {**user.headers, **TUS, "Content-Type": OCTETS, "Upload-Offset": str(offset)}
        sent = fresh(service, "PATCH", url, headers=headers, content=data[offset : offset + 4 * KiB])
        assert sent.status_code == 204, sent.text
        head = fresh(service, "HEAD", url, headers={**user.headers, **TUS})
        assert head.status_code == 200 and head.headers["upload-offset"] == str(offset + 4 * KiB)
    stale = fresh(  # a process that wrote earlier parts does not trust what it remembers
        service, "PATCH", url, content=b"x",
        headers={**user.headers, **TUS, "Content-Type": OCTETS, "Upload-Offset": "0"},
    )  # fmt: skip
    assert stale.status_code == 409 and stale.headers["upload-offset"] == str(len(data))
    assert (service.data_dir / "uploads" / url.rsplit("/", 1)[-1]).read_bytes() == data
    task = fresh(service, "GET", f"/tasks/{url.rsplit('/', 1)[-1]}", headers=user.headers)
    assert task.status_code == 200 and task.json()["status"] == "queued"


def test_a_killed_process_is_replaced_and_nothing_sent_meanwhile_is_lost(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(api_processes="2")
    victim, survivor = nodes(service)
    victim_slot = victim.cmdline()[-3]
    # A process that dies before it ran NODE_READY_AFTER is a failed start (the parent
    # gives up, as serve does): this one dies after a good start.
    time.sleep(NODE_READY_AFTER + 2 * TICK)
    victim.kill()
    victim.wait(10)
    # Connections the kernel hands to the dead process's socket wait in its queue (the
    # parent holds the socket) until the replacement accepts them.
    answers = [fresh(service, "GET", "/healthz").status_code for _ in range(20)]
    assert answers == [200] * 20
    wait_until(lambda: len(nodes(service)) == 2, what="the replacement process")
    replacement = next(child for child in nodes(service) if child.pid != survivor.pid)
    assert replacement.pid != victim.pid
    assert replacement.cmdline()[-3] == victim_slot
    assert "exited with status -9; restarting it" in service.api.log()


def test_a_killed_parent_takes_its_processes_with_it(service_factory: Callable[..., Service]) -> None:
    service = service_factory(api_processes="2")
    children = nodes(service)
    (shared,) = {Path(child.environ()["PROMETHEUS_MULTIPROC_DIR"]) for child in children}
    service.api.kill()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    try:
        httpx.get(service.base_url + "/healthz", timeout=2.0)
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError("the port still answers after its processes died")
    assert shared.is_dir()  # nothing ran to remove it
    service.restart_api()
    assert not shared.exists()  # the next parent removed what the dead one left


def test_only_the_metrics_directories_of_gone_parents_are_removed(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    gone = tmp_path / f"{METRICS_PREFIX}{finished.pid}-abc"
    gone.mkdir()
    (gone / "counter_1.db").write_bytes(b"x")
    running = tmp_path / f"{METRICS_PREFIX}{os.getpid()}-def"
    running.mkdir()
    unrelated = tmp_path / f"{METRICS_PREFIX}notapid"
    unrelated.mkdir()
    made = metrics_dir(tmp_path)
    assert not gone.exists() and running.is_dir() and unrelated.is_dir()
    assert made.parent == tmp_path and made.name.startswith(f"{METRICS_PREFIX}{os.getpid()}-")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700

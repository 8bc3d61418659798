"""An API node's SIGTERM and kill -9 with uploads in flight (issue 10), on the real
``tusd-py api`` process, the suite's Redis and httpx/tuspy as clients."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import pytest
from tusclient import client as tus_client

from tests.support import Service, in_thread, wait_until
from tests.tus.helpers import OCTETS as OFFSET_OCTETS
from tests.tus.helpers import TUS
from tests.tus.helpers import slow_body as trickle
from tusd_py.graceful import SHUTDOWN_GRACE

MiB = 1024 * 1024
OCTETS = {"Content-Type": OFFSET_OCTETS}


def size_of(path: Any) -> int:
    try:
        return int(path.stat().st_size)
    except FileNotFoundError:
        return -1


def create(client: httpx.Client, length: int) -> str:
    response = client.post("/files/", headers={**TUS, "Upload-Length": str(length)})
    assert response.status_code == 201, response.text
    return "/files/" + response.headers["location"].rsplit("/", 1)[-1]


def api_processes(service: Service) -> list[psutil.Process]:
    """The process that serves, or the parent and the API processes it started."""
    parent = psutil.Process(service.api.pid)
    return [parent, *parent.children()]


# With "2", SIGTERM and kill -9 reach the parent (tusd_py.api_nodes), as a container's stop does.
PROCESSES = pytest.mark.parametrize("processes", ["1", "2"])


@PROCESSES
def test_sigterm_lets_a_running_patch_save_and_answer_then_exits(
    service_factory: Callable[..., Service], processes: str
) -> None:
    service = service_factory(api_processes=processes)
    serving = api_processes(service)
    assert len(serving) == (1 if processes == "1" else 3)
    user = service.register()
    data = os.urandom(16 * MiB)  # at about 2 MB/s the body would take longer than the grace
    with service.client(user) as client:
        url = create(client, len(data))
        data_file = service.data_dir / "uploads" / url.rsplit("/", 1)[-1]
        thread, box = in_thread(
            lambda: client.patch(
                url, content=trickle(data, pause=0.03), headers={**TUS, **OCTETS, "Upload-Offset": "0"}
            )
        )
        wait_until(lambda: size_of(data_file) >= MiB, what="the PATCH is under way")
        signalled = time.monotonic()
        service.api.send_signal(signal.SIGTERM)
        thread.join(30)
        (response,) = box
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 204  # answered, not cut off at the deadline
        offset = int(response.headers["upload-offset"])
        assert MiB <= offset < len(data)
        assert size_of(data_file) == offset  # everything it received is saved and counted
        try:
            status = service.api.wait(timeout=SHUTDOWN_GRACE + 10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the API did not exit:\n{service.api.log()}") from None
        exited = time.monotonic() - signalled
        assert status in (0, -signal.SIGTERM), service.api.log()
        assert "timeout graceful shutdown exceeded" not in service.api.log()
        assert exited < SHUTDOWN_GRACE + 10  # a bound on a hang, not a timing claim
        assert not any(process.is_running() for process in serving)
        assert data_file.read_bytes() == data[:offset]
    service.restart_api()  # the client resumes (here: the same node, back again)
    with service.client(user) as client:
        head = client.head(url, headers=TUS)
        assert head.status_code == 200 and head.headers["upload-offset"] == str(offset)
        rest = client.patch(
            url, content=data[offset:], headers={**TUS, **OCTETS, "Upload-Offset": str(offset)}
        )
        assert rest.status_code == 204
        task = client.get(f"/tasks/{url.rsplit('/', 1)[-1]}")
        assert task.status_code == 200 and task.json()["status"] == "queued"
    assert data_file.read_bytes() == data


@PROCESSES
def test_kill_9_then_restart_head_and_tuspy_resume_at_once(
    service_factory: Callable[..., Service], tmp_path: Any, processes: str
) -> None:
    service = service_factory(api_processes=processes)
    serving = api_processes(service)
    user = service.register()
    data = os.urandom(6 * MiB)
    with service.client(user) as client:
        url = create(client, len(data))
        upload_id = url.rsplit("/", 1)[-1]
        data_file = service.data_dir / "uploads" / upload_id
        thread, _ = in_thread(
            lambda: client.patch(url, content=trickle(data), headers={**TUS, **OCTETS, "Upload-Offset": "0"})
        )
        wait_until(lambda: size_of(data_file) >= MiB, what="the PATCH is under way")
        service.api.kill()  # SIGKILL: its upload lock stays in Redis
        _, alive = psutil.wait_procs(serving, timeout=10)  # API processes die with their parent
        assert alive == []
        thread.join(30)
    service.restart_api()
    time.sleep(0.5)  # a client that resumes half a second after the restart
    tus = tus_client.TusClient(service.base_url + "/files/", headers=user.headers)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    uploader = tus.uploader(str(source), url=service.base_url + url, chunk_size=2 * MiB)  # HEAD: 200
    assert MiB <= uploader.offset < len(data)
    uploader.upload()  # PATCHes: 204, with tuspy's default of no retries
    assert data_file.read_bytes() == data
    with service.client(user) as client:
        task = client.get(f"/tasks/{upload_id}")
        assert task.status_code == 200 and task.json()["status"] == "queued"


def test_a_complete_upload_whose_finish_was_never_recorded_becomes_one_task(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory()
    user = service.register()
    data = os.urandom(64 * 1024)
    with service.client(user) as client:
        url = create(client, len(data))
        upload_id = url.rsplit("/", 1)[-1]
        sent = client.patch(url, content=data[:-1], headers={**TUS, **OCTETS, "Upload-Offset": "0"})
        assert sent.status_code == 204
        # The node died between the last byte and the finish: the byte is on disk, no task.
        with (service.data_dir / "uploads" / upload_id).open("ab") as data_file:
            data_file.write(data[-1:])
        assert client.get(f"/tasks/{upload_id}").status_code == 404
        for _ in range(3):  # tus-js-client's retry, tuspy's resume, a browser reload
            head = client.head(url, headers=TUS)
            assert head.status_code == 200 and head.headers["upload-offset"] == str(len(data))
        task = client.get(f"/tasks/{upload_id}")
        assert task.status_code == 200 and task.json()["status"] == "queued"
        assert [item["id"] for item in client.get("/tasks").json()["tasks"]] == [upload_id]

"""A deployment through a Redis outage of about 10 s (issue 10): separate ``tusd-py api`` and
``tusd-py worker`` processes on a redis-server this test starts on a free port with an AOF
dir, kills with -9 while uploads (tuspy and tus-js-client) and tasks are in flight, and
starts again on the same port and AOF dir.

Afterwards every task is ``completed`` exactly once and every upload is byte-identical;
during the outage tus routes answer 423 + Retry-After, other Redis routes 503 +
Retry-After + JSON, ``/healthz`` 200 and ``/readyz`` 503; the worker stays up throughout.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from arq.constants import job_key_prefix
from redis import Redis as SyncRedis
from tusclient.client import TusClient

from processing.events import stream_key
from processing.housekeeping import LOST_AFTER_MS
from processing.records import ACTIVE_KEY, now_ms, task_key
from tests.support import Service, User, free_port, start_service, wait_until
from tusd_py.embedded_redis import RedisProcess

JS_DIR = Path(__file__).parent / "js"
OUTAGE_SECONDS = 10.0
SLOW_TASKS = 6
"""fault-slow tasks (about 2 s each) for one worker with max_jobs=2: two run, the others
wait (about 6 s of work, so some are still unfinished when Redis goes, even under load)."""


def tus_head(service: Service, user: User, url: str) -> httpx.Response:
    return httpx.head(url, headers={**user.headers, "Tus-Resumable": "1.0.0"}, timeout=5)


def task_of(service: Service, user: User, task_id: str) -> dict[str, object]:
    with service.client(user) as client:
        response = client.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


def upload_small(client: TusClient, payload: bytes, operation: str) -> str:
    uploader = client.uploader(
        file_stream=io.BytesIO(payload),
        chunk_size=len(payload),
        metadata={"filename": "slow.bin", "operation": operation},
        store_url=False,
    )
    uploader.upload()
    return str(uploader.url).rstrip("/").rsplit("/", 1)[-1]


def completions(redis_url: str, owner: str) -> dict[str, int]:
    """task id -> number of task.completed events in the owner's stream."""
    counts: dict[str, int] = {}
    with SyncRedis.from_url(redis_url, decode_responses=True) as redis:
        for _, fields in redis.xrange(stream_key(owner), "-", "+"):
            if fields.get("event") == "task.completed":
                counts[fields["id"]] = counts.get(fields["id"], 0) + 1
    return counts


@pytest.mark.skipif(
    shutil.which("node") is None or not (JS_DIR / "node_modules" / "tus-js-client").is_dir(),
    reason="Node and tus-js-client (make js-clients) are not available",
)
def test_a_redis_outage_of_ten_seconds_loses_no_upload_and_no_task(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path / "redis", port=free_port(), persistent=True)
    redis_url = server.start()
    service = start_service(tmp_path / "svc", redis_url, workers=1, enable_fault_operations="true")
    node: subprocess.Popen[str] | None = None
    try:
        user = service.register()
        worker = service.workers[0]
        client = TusClient(f"{service.base_url}/files/", headers=user.headers)

        # Tasks in flight: two running, the others queued.
        slow = [upload_small(client, os.urandom(20_000 + i), "fault-slow") for i in range(SLOW_TASKS)]
        wait_until(
            lambda: sum(task_of(service, user, t)["status"] == "processing" for t in slow) == 2,
            timeout=30, what="two slow tasks running",
        )  # fmt: skip

        # A tuspy upload stopped at half, to be finished during the outage.
        tuspy_source = os.urandom(2 * 1024 * 1024)
        tuspy_path = tmp_path / "tuspy.bin"
        tuspy_path.write_bytes(tuspy_source)
        tuspy = client.uploader(
            str(tuspy_path),
            chunk_size=256 * 1024,
            metadata={"filename": "tuspy.bin", "operation": "sha256"},
            retries=30,
            retry_delay=1,
            store_url=False,
        )
        tuspy.upload(stop_at=len(tuspy_source) // 2)
        tuspy_url = str(tuspy.url)

        # A tus-js-client upload paused at half (it goes on when told, during the outage).
        js_source = tmp_path / "js.txt"
        js_source.write_bytes(os.urandom(1024 * 1024))
        state = tmp_path / "js-state.json"
        node = subprocess.Popen(
            ["node", str(JS_DIR / "tus_upload.cjs"), "paused", f"{service.base_url}/files/",
             user.access_token, str(js_source), str(state)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(lambda: Path(f"{state}.half").exists(), timeout=30, what="tus-js-client at half")
        js_urls_before = [entry["uploadUrl"] for entry in json.loads(state.read_text()).values()]

        # --- the outage ---------------------------------------------------------------
        unfinished = [t for t in slow if task_of(service, user, t)["status"] != "completed"]
        assert unfinished, "tasks must be in flight when Redis goes"
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        killed_at = time.monotonic()

        tuspy_error: list[BaseException] = []

        def finish_tuspy() -> None:
            try:
                tuspy.upload()
            except BaseException as exc:  # reported by the assertion below
                tuspy_error.append(exc)

        tuspy_thread = threading.Thread(target=finish_tuspy)
        tuspy_thread.start()
        Path(f"{state}.go").write_text("go")

        with httpx.Client(base_url=service.base_url, timeout=5) as http:
            tus_headers = {**user.headers, "Tus-Resumable": "1.0.0"}
            head = http.head(tuspy_url, headers=tus_headers)
            assert (head.status_code, head.headers.get("retry-after")) == (423, "2")
            patch = http.patch(
                tuspy_url,
                headers={
                    **tus_headers,
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                },
                content=b"x",
            )
            assert (patch.status_code, patch.headers.get("retry-after")) == (423, "2")
            post = http.post("/files/", headers={**tus_headers, "Upload-Length": "10"})
            assert (post.status_code, post.headers.get("retry-after")) == (423, "2")
            task = http.get(f"/tasks/{slow[0]}", headers=user.headers)
            assert (task.status_code, task.headers.get("retry-after")) == (503, "2")
            assert task.json()["error"]["code"] == "unavailable"
            assert http.get("/healthz").status_code == 200
            assert http.get("/readyz").status_code == 503

        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - killed_at)))
        assert worker.alive(), worker.log()
        server.start()  # the same port and AOF dir
        back_at = time.monotonic()

        # --- afterwards ---------------------------------------------------------------
        first_completed: float | None = None
        deadline = back_at + 30
        while time.monotonic() < deadline:
            statuses = [task_of(service, user, t)["status"] for t in slow]
            if first_completed is None and "completed" in statuses:
                first_completed = time.monotonic() - back_at
            if all(s in ("completed", "failed", "cancelled") for s in statuses):
                break
            time.sleep(0.05)
        print(f"outage end to first completed task: {first_completed} s")

        tuspy_thread.join(60)
        assert not tuspy_thread.is_alive() and not tuspy_error, tuspy_error
        stdout, stderr = node.communicate(timeout=60)
        assert node.returncode == 0, stderr
        js_url = json.loads(stdout.strip().splitlines()[-1])["url"]
        assert js_urls_before == [js_url], "tus-js-client must resume its upload, not start another"
        assert int(tus_head(service, user, js_url).headers["upload-offset"]) == js_source.stat().st_size

        uploads = {
            tuspy_url.rstrip("/").rsplit("/", 1)[-1]: tuspy_source,
            str(js_url).rstrip("/").rsplit("/", 1)[-1]: js_source.read_bytes(),
        }
        wait_until(
            lambda: all(task_of(service, user, t)["status"] == "completed" for t in [*slow, *uploads]),
            timeout=30, what="every task completed",
        )  # fmt: skip
        with service.client(user) as http:
            for upload_id, source in uploads.items():
                assert (service.data_dir / "uploads" / upload_id).read_bytes() == source
                digests = http.get(f"/tasks/{upload_id}/result").json()
                assert digests["sha256"] == hashlib.sha256(source).hexdigest()
                assert digests["bytes"] == len(source)
        for task_id in slow:
            assert task_of(service, user, task_id)["attempts"] == 1  # recorded, not run again
        assert completions(redis_url, user.id) == {t: 1 for t in [*slow, *uploads]}

        assert worker.alive()
        log = worker.log()
        assert "Traceback" not in log, log
        assert log.count("worker: Redis unavailable") == 1, log
        assert log.count("worker: Redis is back") == 1, log
    finally:
        if node is not None and node.poll() is None:
            node.kill()
        service.stop()
        server.stop()


def test_api_nodes_recover_lost_tasks_while_no_worker_runs(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Housekeeping also runs on API nodes: with no worker at all, a queued task whose ARQ
    job was lost is enqueued again, and a processing one is failed with the reason."""
    service = service_factory(workers=0, housekeeping_interval="1", enable_fault_operations="true")
    user = service.register()
    client = TusClient(f"{service.base_url}/files/", headers=user.headers)
    queued, stuck = (upload_small(client, f"lost task {i}".encode(), "uppercase") for i in range(2))
    long_ago = now_ms() - LOST_AFTER_MS - 60_000
    with SyncRedis.from_url(service.env["TUSD_PY_REDIS_URL"]) as redis:
        redis.hset(task_key(stuck), mapping={"status": "processing", "attempts": "1"})
        for task_id in (queued, stuck):  # as if ARQ had expired or dropped the job long ago
            redis.delete(job_key_prefix + task_id)
            redis.zrem("arq:queue", task_id)
            redis.zadd(ACTIVE_KEY, {task_id: long_ago})
        wait_until(lambda: redis.exists(job_key_prefix + queued), timeout=20, what="the job enqueued again")
    failed = task_of(service, user, stuck)
    assert failed["status"] == "failed" and "lost" in str(failed["error"]), failed
    assert task_of(service, user, queued)["status"] == "queued"
    service.start_worker()
    wait_until(lambda: task_of(service, user, queued)["status"] == "completed", timeout=30, what="completed")
    with service.client(user) as http:
        assert http.get(f"/tasks/{queued}/result").content == b"LOST TASK 0"

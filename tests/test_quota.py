"""Issue 12: the per-user storage quota, the unfinished-tasks cap, ``usage`` on
``GET /auth/me`` and account removal, against a real server, real Redis and a real worker."""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from redis import Redis as SyncRedis

from processing.events import event_log_for
from processing.housekeeping import sweep
from processing.tasks import TaskStore, now_ms
from processing.usage import TOTAL_FIELD, StorageLedger, result_room, usage_key
from tests.support import Service, User
from tusd_py.processing_config import processing_config
from tusd_py.settings import Settings
from tusd_py.tus import FileStore, Hooks, MemoryLocker, TusHandler, UploadInfo
from tusd_py.usage import LedgerStorageQuota

Factory = Callable[..., Service]
TUS = {"Tus-Resumable": "1.0.0"}
BODY = {**TUS, "Content-Type": "application/offset+octet-stream"}


def metadata(**pairs: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items())


def create(client: httpx.Client, length: int | None, *, body: bytes = b"", **headers: str) -> httpx.Response:
    sent = {**(BODY if body else TUS), **headers}
    if length is None:
        sent["Upload-Defer-Length"] = "1"
    else:
        sent["Upload-Length"] = str(length)
    return client.post("/files/", content=body, headers=sent)


def upload_id(response: httpx.Response) -> str:
    return response.headers["location"].rsplit("/", 1)[1]


def usage(client: httpx.Client) -> dict[str, int]:
    me = client.get("/auth/me")
    assert me.status_code == 200, me.text
    return me.json()["usage"]


def wait_status(client: httpx.Client, task_id: str, status: str, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        task = client.get(f"/tasks/{task_id}").json()
        if task["status"] == status:
            return task
        assert time.monotonic() < deadline, f"task {task_id} stayed {task['status']}, not {status}"
        time.sleep(0.05)


def assert_quota_refusal(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    error = response.json()["error"]
    assert error["code"] == "storage_quota_exceeded"
    assert "TUSD_PY_STORAGE_QUOTA" in error["message"] and str(limit) in error["message"]


# -- item 1: the storage quota -------------------------------------------------------------


def test_storage_quota_counts_uploads_and_result_room_and_refuses_with_403(service_factory: Factory) -> None:
    limit = 20_000
    service = service_factory(storage_quota=str(limit), max_upload_size="5000")
    user = service.register()
    with service.client(user) as client:
        assert usage(client) == {
            "bytes_used": 0,
            "bytes_allowed": limit,
            "unfinished_uploads": 0,
            "unfinished_tasks": 0,
            "unfinished_tasks_allowed": 1000,
        }
        finished = create(client, 3000, body=b"x" * 3000)
        assert finished.status_code == 201
        counted = 3000 + result_room(3000)
        assert usage(client)["bytes_used"] == counted  # a finished upload still counts
        assert usage(client)["unfinished_tasks"] == 1  # no worker: its task waits

        # A deferred length counts as Tus-Max-Size (plus its room) until it is declared.
        deferred = create(client, None)
        assert deferred.status_code == 201, deferred.text
        assert usage(client)["bytes_used"] == counted + 5000 + result_room(5000)
        assert usage(client)["unfinished_uploads"] == 1
        declared = client.patch(
            f"/files/{upload_id(deferred)}",
            content=b"",
            headers={**BODY, "Upload-Offset": "0", "Upload-Length": "100"},
        )
        assert declared.status_code == 204
        assert usage(client)["bytes_used"] == counted + 100 + result_room(100)

        # A partial upload never becomes a task: its own bytes, no room.
        partial = create(client, 1000, **{"Upload-Concat": "partial"})
        assert partial.status_code == 201
        counted += 100 + result_room(100) + 1000
        assert usage(client)["bytes_used"] == counted

        refused = create(client, 5000)
        assert_quota_refusal(refused, limit)
        assert usage(client)["bytes_used"] == counted  # a refusal reserves nothing

        # Termination frees the bytes and the room; the same creation then fits.
        assert client.delete(f"/files/{upload_id(finished)}", headers=TUS).status_code == 204
        assert usage(client)["bytes_used"] == counted - 3000 - result_room(3000)
        assert create(client, 5000).status_code == 201


def test_a_final_upload_counts_its_own_bytes(service_factory: Factory) -> None:
    limit = 10_000
    service = service_factory(storage_quota=str(limit))
    user = service.register()
    with service.client(user) as client:
        part = create(client, 2000, body=b"p" * 2000, **{"Upload-Concat": "partial"})
        assert part.status_code == 201
        final_headers = {**TUS, "Upload-Concat": f"final;/files/{upload_id(part)}"}
        first = client.post("/files/", headers=final_headers)
        assert first.status_code == 201
        assert usage(client)["bytes_used"] == 2000 + 2000 + result_room(2000)
        second = client.post("/files/", headers=final_headers)
        assert_quota_refusal(second, limit)


def test_idle_uploads_are_evicted_before_the_quota_refuses(service_factory: Factory) -> None:
    limit = 10_000
    service = service_factory(storage_quota=str(limit), upload_idle_timeout="0")
    user = service.register()
    with service.client(user) as client:
        idle = create(client, 8000, **{"Upload-Concat": "partial"})
        assert idle.status_code == 201
        finished = create(client, 100, body=b"y" * 100)  # finished: never evicted
        assert finished.status_code == 201
        fresh = create(client, 1000)  # 8000 + 1224 + 3024 > 10000: the idle one goes
        assert fresh.status_code == 201
        assert client.head(f"/files/{upload_id(idle)}", headers=TUS).status_code == 404
        assert client.head(f"/files/{upload_id(finished)}", headers=TUS).status_code == 200
        assert usage(client)["bytes_used"] == 100 + result_room(100) + 1000 + result_room(1000)
        # Even evicting `fresh` (idle at once here) leaves 1224 + 9027 > 10000: refused.
        assert_quota_refusal(create(client, 4000), limit)


def test_results_are_charged_at_their_real_size(service_factory: Factory) -> None:
    service = service_factory(workers=1)
    user = service.register()
    with service.client(user) as client:
        created = create(client, 5, body=b"hello")
        assert created.status_code == 201
        wait_status(client, upload_id(created), "completed")
        assert client.get(f"/tasks/{upload_id(created)}/result").content == b"HELLO"
        # The room held back for the result became the result's 5 bytes.
        assert usage(client)["bytes_used"] == 5 + 5
        assert usage(client)["unfinished_tasks"] == 0


def test_a_result_that_would_pass_the_quota_fails_its_task(service_factory: Factory) -> None:
    service = service_factory(storage_quota="100000")
    user = service.register()
    with service.client(user) as client:
        created = create(client, 1000, body=b"z" * 1000)
        assert created.status_code == 201
        assert usage(client)["bytes_used"] == 1000 + result_room(1000)
        # The operator lowers the quota: the worker sees 1500 bytes, and 1000 + 1000 pass it.
        service.env["TUSD_PY_STORAGE_QUOTA"] = "1500"
        service.start_worker()
        task = wait_status(client, upload_id(created), "failed")
        assert "storage quota" in str(task["error"]) and "1500" in str(task["error"])
        assert client.get(f"/tasks/{upload_id(created)}/result").status_code == 409  # no result
        assert usage(client)["bytes_used"] == 1000  # the room was given back, the upload stays


# -- item 3: the unfinished-tasks cap ----------------------------------------------------------


def test_unfinished_tasks_are_capped_at_creation_never_at_completion(service_factory: Factory) -> None:
    service = service_factory(max_unfinished_tasks="2")  # no worker: tasks stay queued
    user = service.register()
    with service.client(user) as client:
        pending = create(client, 5)  # allowed at 0 unfinished tasks; completed later
        assert pending.status_code == 201
        first, second = create(client, 0), create(client, 0)
        assert first.status_code == second.status_code == 201
        assert usage(client)["unfinished_tasks"] == 2
        refused = create(client, 0)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert refused.json()["error"]["code"] == "too_many_tasks"
        assert "TUSD_PY_MAX_UNFINISHED_TASKS" in refused.json()["error"]["message"]
        # Partial uploads never become tasks: not capped.
        assert create(client, 10, **{"Upload-Concat": "partial"}).status_code == 201
        # Completing an upload created under the cap is never refused.
        done = client.patch(
            f"/files/{upload_id(pending)}", content=b"later", headers={**BODY, "Upload-Offset": "0"}
        )
        assert done.status_code == 204
        assert usage(client)["unfinished_tasks"] == 3
        # Cancelling frees slots (3 -> 1).
        for task_id in (upload_id(pending), upload_id(first)):
            assert client.delete(f"/tasks/{task_id}").status_code == 200
        assert usage(client)["unfinished_tasks"] == 1
        assert create(client, 0).status_code == 201


# -- item 4: account removal ---------------------------------------------------------------------


def test_account_removal_cancels_tasks_and_removes_everything(service_factory: Factory) -> None:
    service = service_factory(workers=1, enable_fault_operations="true")
    user = service.register()
    other = service.register()
    redis_url = service.env["TUSD_PY_REDIS_URL"]
    with service.client(user) as client, service.client(other) as other_client:
        done = create(client, 5, body=b"hello")
        kept = create(other_client, 5, body=b"other")
        wait_status(client, upload_id(done), "completed")
        wait_status(other_client, upload_id(kept), "completed")
        hanging = create(client, 3, body=b"abc", **{"Upload-Metadata": metadata(operation="fault-hang")})
        wait_status(client, upload_id(hanging), "processing")
        unfinished = create(client, 100, body=b"12345")
        ids = [upload_id(response) for response in (done, hanging, unfinished)]
        assert usage(client)["bytes_used"] > 0

        removed = client.request("DELETE", "/auth/me", json={"password": user.password})
        assert removed.status_code == 204

        with SyncRedis.from_url(redis_url) as redis:
            # The running try was cancelled: its ARQ job ends (a hang never would).
            deadline = time.monotonic() + 30
            while redis.exists(f"arq:in-progress:{upload_id(hanging)}"):
                assert time.monotonic() < deadline, "the hanging task's job kept running"
                time.sleep(0.05)
            left = [key.decode() for key in redis.scan_iter() if user.id in key.decode()]
            left += [key.decode() for key in redis.scan_iter("tusd:task:*") if key.decode()[10:] in ids]
            assert left == []
            assert redis.exists(f"tusd:usage:{other.id}") == 1  # another user's things stay
        files = [path.name for path in _data_files(service.data_dir)]
        assert [name for name in files if any(name.startswith(task_id) for task_id in ids)] == []
        assert any(name.startswith(upload_id(kept)) for name in files)
        assert other_client.get(f"/tasks/{upload_id(kept)}/result").content == b"OTHER"


def _data_files(data_dir: Path) -> list[Path]:
    return [path for sub in ("uploads", "results") for path in (data_dir / sub).rglob("*") if path.is_file()]


def test_a_zero_quota_refuses_every_upload_with_bytes(service_factory: Factory) -> None:
    service = service_factory(storage_quota="0")
    user: User = service.register()
    with service.client(user) as client:
        assert_quota_refusal(create(client, 1), 0)
        assert create(client, 0).status_code == 201  # an empty upload keeps nothing


# -- releases: expiry and retention ---------------------------------------------------------------


async def test_expiry_frees_the_storage_quota(tmp_path: Path, redis_database: str) -> None:
    """The expiry sweep goes through the termination path: the ledger forgets the upload."""
    redis = aioredis.Redis.from_url(redis_database)
    try:
        ledger = StorageLedger(redis, limit=10_000)
        store = FileStore(tmp_path)

        async def nobody(request: object) -> str | None:
            return None

        handler = TusHandler(
            store,
            MemoryLocker(),
            Hooks(nobody),
            max_size=1000,
            expiry_seconds=60,
            storage=LedgerStorageQuota(ledger),
        )
        info = UploadInfo(id=uuid.uuid4().hex, owner="alice", length=500, created_at=time.time() - 120)
        assert handler.admission is not None
        await handler.admission.reserve(info, 500)
        await store.create(info)
        stamp = time.time() - 120
        os.utime(store.data_path(info.id), (stamp, stamp))
        assert await ledger.used("alice") == 500 + result_room(500)
        assert await handler.sweep_expired() == 1
        assert await ledger.entries("alice") == {}
    finally:
        await redis.aclose()


async def test_retention_frees_the_upload_and_its_result(service_factory: Factory) -> None:
    service = service_factory(workers=1)
    user = service.register()
    with service.client(user) as client:
        created = create(client, 5, body=b"hello")
        wait_status(client, upload_id(created), "completed")
        assert usage(client)["bytes_used"] == 10
    redis = aioredis.Redis.from_url(service.env["TUSD_PY_REDIS_URL"])
    try:
        config = processing_config(Settings.from_env(service.env))
        ledger = StorageLedger(redis, limit=config.storage_quota)
        tasks = TaskStore(redis, event_log_for(config, redis))
        arq = ArqRedis(connection_pool=redis.connection_pool, default_queue_name=config.queue_name)
        later = now_ms() + (config.result_retention + 1) * 1000
        report = await sweep(
            tasks,
            arq,
            config,
            later,
            uploads=FileStore(Settings.from_env(service.env).uploads_dir),
            usage=ledger,
        )
        assert report.deleted == 1
        assert await ledger.entries(user.id) == {}
    finally:
        await redis.aclose()
    with service.client(user) as client:
        assert usage(client)["bytes_used"] == 0


# -- the ledger's running total ------------------------------------------------------------------


async def test_the_ledger_keeps_a_running_total_that_matches_its_entries(redis_database: str) -> None:
    """Checks read one field, not every entry; the field always equals the entries' sum,
    is never an entry, and a hash written before it existed is counted right."""
    redis = aioredis.Redis.from_url(redis_database)
    key = usage_key("carol")

    async def consistent() -> int:
        raw = await redis.hgetall(key)
        entries = await ledger.entries("carol")
        assert TOTAL_FIELD not in entries
        assert int(raw.get(TOTAL_FIELD.encode(), b"0")) == sum(entries.values())
        return sum(entries.values())

    try:
        ledger = StorageLedger(redis, limit=1000)
        await redis.hset(key, mapping={"upload:old": 300, "result:old": 100})  # before the field
        assert not await ledger.reserve("carol", {"upload:a": 500, "room:a": 200})  # 400 + 700
        assert await ledger.reserve("carol", {"upload:a": 300, "room:a": 200})
        assert await consistent() == 900
        assert await ledger.reserve("carol", {"upload:a": 999})  # idempotent: counted already
        await ledger.resize("carol", {"upload:a": 250, "upload:absent": 7})
        assert await consistent() == 850
        assert not await ledger.charge_result("carol", "a", 451)  # 850 - 200 + 451 > 1000
        assert await consistent() == 650  # the room was given back
        assert await ledger.reserve("carol", {"room:a": 200})
        assert await ledger.charge_result("carol", "a", 120)
        assert await consistent() == 770
        await ledger.release("carol", "upload:old", "result:old", "upload:none")
        assert await consistent() == 370
        await ledger.release("carol", "upload:a", "result:a")
        assert await redis.exists(key) == 0  # nothing but the total left: the hash goes
        assert await ledger.used("carol") == 0
    finally:
        await redis.aclose()

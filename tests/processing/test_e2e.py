"""End to end: real API and worker processes, uploads with tuspy, the task API and SSE.

Each test talks HTTP to ``python -m tusd_py api`` and a ``python -m tusd_py worker``
started by the suite's fixtures; processes are killed for real.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from tusclient import client as tus

from tests.processing.forking import processes_of_task
from tests.support import Service, User

TEXT = "Grüße aus Köln — straße, café, ÆØÅ, ﬁ ligature.\nsecond line\n".encode()
FINAL = {"completed", "failed", "cancelled"}


def upload(
    service: Service,
    user: User,
    data: bytes,
    operation: str | None = "uppercase",
    filename: str = "input.txt",
) -> str:
    """Upload ``data`` with tuspy; return the task (= upload) id."""
    metadata = {"filename": filename}
    if operation is not None:
        metadata["operation"] = operation
    client = tus.TusClient(service.base_url + "/files/", headers=user.headers)
    uploader = client.uploader(file_stream=io.BytesIO(data), chunk_size=256 * 1024, metadata=metadata)
    uploader.upload()
    return uploader.url.rstrip("/").rsplit("/", 1)[1]


def wait_task(
    api: httpx.Client,
    task_id: str,
    predicate: Callable[[dict[str, Any]], bool] = lambda t: t["status"] in FINAL,
    within: float = 60.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = api.get(f"/tasks/{task_id}")
        if response.status_code == 200:
            task = response.json()
            if predicate(task):
                return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never got there; last seen {task}")


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: dict[str, Any]


def sse_events(response: httpx.Response) -> Iterator[SseEvent]:
    """A minimal text/event-stream parser (comments skipped)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                yield SseEvent(fields.get("id"), fields.get("event", "message"), json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def no_child_left(task_id: str, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not processes_of_task(task_id):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- task API


def test_text_upload_is_uppercased_end_to_end(live: Service, user: User) -> None:
    task_id = upload(live, user, TEXT, operation=None, filename="Grüße notes.txt")
    with live.client(user) as api:
        task = wait_task(api, task_id)
        assert task["status"] == "completed", task
        assert task["operation"] == "uppercase" and task["filename"] == "Grüße notes.txt"
        assert task["size"] == len(TEXT) and task["progress"] == 1.0
        assert task["attempts"] == 1 and task["max_attempts"] == 4 and task["error"] is None
        assert task["result_url"] == f"/tasks/{task_id}/result"
        for stamp in ("created_at", "started_at", "finished_at"):
            assert task[stamp].endswith("Z")
        assert task["created_at"] <= task["started_at"] <= task["finished_at"]

        result = api.get(task["result_url"])
        assert result.status_code == 200
        assert result.content == TEXT.decode().upper().encode()
        assert result.headers["content-type"] == "text/plain; charset=utf-8"
        assert result.headers["content-length"] == str(len(result.content))
        disposition = result.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="Gr__e notes.txt.upper.txt"')
        assert "filename*=UTF-8''Gr%C3%BC%C3%9Fe%20notes.txt.upper.txt" in disposition

        part = api.get(task["result_url"], headers={"Range": "bytes=0-3"})
        assert part.status_code == 206 and part.content == result.content[:4]
        beyond = api.get(task["result_url"], headers={"Range": f"bytes={len(result.content) + 10}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(result.content)}"
        assert beyond.json()["error"]["code"] == "range_not_satisfiable"
        malformed = api.get(task["result_url"], headers={"Range": "lines=1-2"})
        assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_range"

        listed = api.get("/tasks").json()
        assert listed["tasks"][0]["id"] == task_id


def test_each_operation_on_a_known_input(live: Service, user: User) -> None:
    data = b"the quick brown fox jumps over the lazy dog\nThe end.\n"
    ids = {op: upload(live, user, data, op) for op in ("uppercase", "wordcount", "sha256", "gzip")}
    with live.client(user) as api:
        results = {}
        for op, task_id in ids.items():
            assert wait_task(api, task_id)["status"] == "completed"
            results[op] = api.get(f"/tasks/{task_id}/result")
    assert results["uppercase"].content == data.upper()
    counts = results["wordcount"].json()
    assert (counts["bytes"], counts["lines"], counts["words"]) == (len(data), 2, 11)
    assert counts["top_words"][0] == {"word": "the", "count": 3}
    assert results["sha256"].json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert results["sha256"].json()["md5"] == hashlib.md5(data).hexdigest()
    assert gzip.decompress(results["gzip"].content) == data
    assert results["gzip"].headers["content-type"] == "application/gzip"


def test_operations_are_listed_without_auth(live: Service) -> None:
    listed = httpx.get(live.base_url + "/operations")
    assert listed.status_code == 200
    names = [op["name"] for op in listed.json()["operations"]]
    assert names[:4] == ["uppercase", "wordcount", "sha256", "gzip"]
    assert "fault-hang" in names  # the live service enables them
    assert all(op["description"] for op in listed.json()["operations"])


def test_unknown_operation_is_refused_at_creation(live: Service, user: User) -> None:
    headers = {
        **user.headers,
        "Tus-Resumable": "1.0.0",
        "Upload-Length": "3",
        "Upload-Metadata": "operation " + base64.b64encode(b"shred").decode(),
    }
    refused = httpx.post(live.base_url + "/files/", headers=headers)
    assert refused.status_code == 400
    assert "unknown operation 'shred'; see GET /operations" in refused.text


def test_listing_validation_and_pagination(live: Service) -> None:
    owner = live.register()
    ids = [upload(live, owner, f"file {i}".encode(), "sha256") for i in range(5)]
    with live.client(owner) as api:
        for task_id in ids:
            wait_task(api, task_id)
        first = api.get("/tasks", params={"limit": 2}).json()
        assert [t["id"] for t in first["tasks"]] == ids[::-1][:2]
        second = api.get("/tasks", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        third = api.get("/tasks", params={"limit": 2, "cursor": second["next_cursor"]}).json()
        assert [t["id"] for t in second["tasks"] + third["tasks"]] == ids[::-1][2:]
        assert third["next_cursor"] is None
        assert len(api.get("/tasks", params={"status": "completed"}).json()["tasks"]) == 5
        assert api.get("/tasks", params={"status": "queued"}).json() == {
            "tasks": [],
            "next_cursor": None,
        }
        for bad in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"status": "done"}, {"cursor": "!"}):
            response = api.get("/tasks", params=bad)
            assert response.status_code == 400, bad
            assert response.json()["error"]["code"] == "bad_request"
    assert httpx.get(live.base_url + "/tasks").status_code == 401


def test_another_user_gets_404_everywhere(live: Service, user: User, other_user: User) -> None:
    task_id = upload(live, user, b"mine", "uppercase")
    with live.client(user) as api:
        assert wait_task(api, task_id)["status"] == "completed"
    with live.client(other_user) as api:
        missing = api.get("/tasks/doesnotexist")
        assert missing.status_code == 404
        for method, path in (
            ("GET", f"/tasks/{task_id}"),
            ("GET", f"/tasks/{task_id}/result"),
            ("GET", f"/tasks/{task_id}/events"),
            ("DELETE", f"/tasks/{task_id}"),
        ):
            response = api.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.json() == missing.json()
        assert task_id not in [t["id"] for t in api.get("/tasks").json()["tasks"]]


def test_result_before_completion_and_cancel_after_it_conflict(live: Service, user: User) -> None:
    task_id = upload(live, user, b"x" * 1000, "fault-slow")
    with live.client(user) as api:
        early = api.get(f"/tasks/{task_id}/result")
        assert early.status_code == 409 and early.json()["error"]["code"] == "not_completed"
        assert wait_task(api, task_id)["status"] == "completed"
        late = api.delete(f"/tasks/{task_id}")
        assert late.status_code == 409 and late.json()["error"]["code"] == "already_finished"


def test_a_crashing_child_is_retried(live: Service, user: User) -> None:
    task_id = upload(live, user, b"survives", "fault-crash-once")
    with live.client(user) as api:
        task = wait_task(api, task_id)
        assert task["status"] == "completed" and task["attempts"] == 2
        assert api.get(f"/tasks/{task_id}/result").content == b"survives"


# ---------------------------------------------------------------- SSE


def test_sse_progress_then_completion_in_order_and_replay(live: Service, user: User) -> None:
    payload = os.urandom(100_000)
    task_id = upload(live, user, payload, "fault-slow")
    with live.client(user) as api:
        with api.stream("GET", f"/tasks/{task_id}/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(stream))  # the stream ends after the final event
        names = [e.event for e in events]
        assert names[0] == "task.queued" and names[-1] == "task.completed"
        assert "task.progress" in names
        assert all(e.data["id"] == task_id for e in events)
        ids = [tuple(map(int, e.id.split("-"))) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        progress = [e.data["progress"] for e in events]
        assert progress == sorted(progress) and progress[-1] == 1.0
        assert events[-1].data["result_url"] == f"/tasks/{task_id}/result"

        middle = len(events) // 2
        resume = {"Last-Event-ID": events[middle].id}
        with api.stream("GET", f"/tasks/{task_id}/events", headers=resume) as stream:
            replayed = list(sse_events(stream))
        assert [e.id for e in replayed] == [e.id for e in events[middle + 1 :]]
        done = api.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": events[-1].id})
        assert done.status_code == 204  # EventSource: stop reconnecting


def test_sse_all_events_with_a_ticket(live: Service, user: User) -> None:
    with live.client(user) as api:
        ticket = api.post("/auth/ticket").json()["ticket"]
    anonymous = httpx.Client(base_url=live.base_url, timeout=30.0)
    with anonymous, anonymous.stream("GET", "/events", params={"ticket": ticket}) as stream:
        assert stream.status_code == 200
        task_id = upload(live, user, b"watched", "uppercase")
        seen = []
        for event in sse_events(stream):
            if event.data["id"] == task_id:
                seen.append(event.event)
                if event.event == "task.completed":
                    break
    assert seen[0] == "task.queued" and seen[-1] == "task.completed"
    assert httpx.get(live.base_url + "/events", params={"ticket": "forged"}).status_code == 401
    assert httpx.get(live.base_url + "/events").status_code == 401


def test_sse_streams_per_user_are_capped(live: Service) -> None:
    owner = live.register()
    with live.client(owner) as api:
        streams = []
        try:
            for _ in range(5):  # TUSD_PY_MAX_EVENT_STREAMS defaults to 5
                stream = api.stream("GET", "/events")
                response = stream.__enter__()
                streams.append(stream)
                assert response.status_code == 200
            refused = api.get("/events")
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_requests"
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)

        def reopened() -> bool:
            with api.stream("GET", "/events") as again:
                return again.status_code == 200

        deadline = time.monotonic() + 15
        while not reopened() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reopened(), "closing streams must free their slots"


# ---------------------------------------------------------------- workers


def test_at_most_two_run_at_once_and_cancel_queued_and_running(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(workers=0, enable_fault_operations="true")
    owner = service.register()
    ids = [upload(service, owner, b"s" * 1000, "fault-slow") for _ in range(9)]
    with service.client(owner) as api:
        assert {api.get(f"/tasks/{i}").json()["status"] for i in ids} == {"queued"}
        cancelled = api.delete(f"/tasks/{ids[-1]}")  # a queued task
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        service.start_worker()

        # Watch until 2 run while 6 wait (each try takes ~2 s, so this is the first state
        # the worker settles in); at no point may more than 2 run.
        deadline = time.monotonic() + 30
        while True:
            listed = {t["id"]: t["status"] for t in api.get("/tasks", params={"limit": 20}).json()["tasks"]}
            statuses = [listed[i] for i in ids[:8]]
            assert statuses.count("processing") <= 2, statuses
            assert all(s in ("queued", "processing") for s in statuses), statuses
            if (statuses.count("processing"), statuses.count("queued")) == (2, 6):
                break
            assert time.monotonic() < deadline, statuses
        running = next(i for i, s in zip(ids, statuses, strict=False) if s == "processing")
        stopped = api.delete(f"/tasks/{running}")  # a running task
        assert stopped.status_code == 200 and stopped.json()["status"] == "cancelled"
        assert no_child_left(running), "the running child must be killed"

        finals = {i: wait_task(api, i) for i in ids}
        assert finals[ids[-1]]["status"] == "cancelled" and finals[ids[-1]]["attempts"] == 0
        assert finals[running]["status"] == "cancelled"
        done = [t for t in finals.values() if t["status"] == "completed"]
        assert len(done) == 7
        points = sorted([(t["started_at"], 1) for t in done] + [(t["finished_at"], -1) for t in done])
        level = peak = 0
        for _, delta in points:
            level += delta
            peak = max(peak, level)
        assert peak == 2
        assert api.get(f"/tasks/{running}/result").status_code == 409


def test_hanging_try_times_out_retries_and_fails(service_factory: Callable[..., Service]) -> None:
    service = service_factory(workers=1, enable_fault_operations="true", job_timeout="1", max_retries="3")
    owner = service.register()
    task_id = upload(service, owner, b"stuck", "fault-hang")
    with service.client(owner) as api:
        task = wait_task(api, task_id, within=90)
    assert task["status"] == "failed"
    assert task["attempts"] == 4 and task["max_attempts"] == 4
    assert task["error"] == "try 4 of 4: timed out after 1 s"
    assert no_child_left(task_id), "every timed-out try's process group must be gone"


def test_worker_killed_with_sigkill_mid_job_recovers(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(workers=1, enable_fault_operations="true")
    owner = service.register()
    payload = os.urandom(300_000)
    task_id = upload(service, owner, payload, "fault-slow")
    with service.client(owner) as api:
        wait_task(api, task_id, lambda t: t["status"] == "processing" and t["progress"] > 0)
        assert processes_of_task(task_id), "the try's child should be running"
        service.workers[0].kill()  # SIGKILL
        killed = time.monotonic()
        assert no_child_left(task_id), "PR_SET_PDEATHSIG must take the child along"
        assert api.get(f"/tasks/{task_id}").json()["status"] == "processing"
        service.start_worker()
        task = wait_task(api, task_id, within=60)
        elapsed = time.monotonic() - killed
        print(f"\ncompleted {elapsed:.1f} s after kill -9 (includes the ~2 s operation)")
        assert task["status"] == "completed" and task["attempts"] == 2
        assert task["error"] is None
        result = api.get(f"/tasks/{task_id}/result")
        assert result.content == payload
    assert not processes_of_task(task_id)


def test_deleting_the_upload_cancels_its_task(live: Service, user: User) -> None:
    task_id = upload(live, user, b"s" * 1000, "fault-slow")
    with live.client(user) as api:
        wait_task(api, task_id, lambda t: t["status"] == "processing")
        deleted = api.delete(f"/files/{task_id}", headers={"Tus-Resumable": "1.0.0"})
        assert deleted.status_code == 204
        task = wait_task(api, task_id)
    assert task["status"] == "cancelled"

"""Races and failures with real processes: concurrent writers, kill -9, a full disk,
stalled clients, quotas, and the finish hook that must run exactly once."""

from __future__ import annotations

import os
import resource
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx
import redis as sync_redis

from tests.support import in_thread
from tests.tus.helpers import (
    OCTETS,
    TusServer,
    backdate,
    checksum,
    create,
    error_of,
    file_size,
    finished_runs,
    offset_of,
    patch,
    slow_body,
    wait_for,
)

MiB = 1024 * 1024
Factory = Callable[..., TusServer]


def set_key(server: TusServer, name: str, value: str | None) -> None:
    client = sync_redis.Redis.from_url(server.redis_url)
    try:
        if value is None:
            client.delete(server.prefix + name)
        else:
            client.set(server.prefix + name, value)
    finally:
        client.close()


def raw_patch_start(server: TusServer, owner: str, url: str, offset: int, total: int) -> socket.socket:
    """Open a PATCH of ``total`` bytes by hand; the caller sends (some of) the body."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    path = "/files/" + url.rsplit("/", 1)[-1]
    sock.sendall(
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: Bearer {owner}\r\nContent-Type: {OCTETS}\r\n"
        f"Upload-Offset: {offset}\r\nContent-Length: {total}\r\n\r\n".encode()
    )
    return sock


def test_two_concurrent_patches_never_interleave(tus_server: TusServer, owner: str) -> None:
    first, second = b"a" * (4 * MiB), b"b" * (4 * MiB)
    with tus_server.client(owner) as client, tus_server.client(owner) as rival:
        url = create(client, 8 * MiB)
        data_file = tus_server.data_path(url)
        thread_a, box_a = in_thread(lambda: patch(client, url, 0, slow_body(first, pause=0.005)))
        wait_for(lambda: file_size(data_file) >= MiB)  # the first writer is under way
        thread_b, box_b = in_thread(lambda: patch(rival, url, 0, slow_body(second, pause=0.005)))
        thread_a.join(60)
        thread_b.join(60)
        response_a, response_b = box_a[0], box_b[0]
        assert response_a.status_code == 204  # asked to let go: answers with what it kept
        # B got the lock A let go of, and found the upload moved on: 409 with the real offset.
        assert response_b.status_code == 409
        offset = offset_of(client, url)
        assert int(response_a.headers["upload-offset"]) == offset
        assert int(response_b.headers["upload-offset"]) == offset
    assert MiB <= offset <= 4 * MiB
    assert data_file.read_bytes() == first[:offset]


def test_a_stalled_patch_lets_go_when_the_client_comes_back(tus_server: TusServer, owner: str) -> None:
    data = os.urandom(3 * MiB)
    with tus_server.client(owner) as client:
        url = create(client, len(data))
        stalled = raw_patch_start(tus_server, owner, url, 0, len(data))
        try:
            stalled.sendall(data[: 3 * MiB // 2])  # then silence: the connection stays open
            wait_for(lambda: file_size(tus_server.data_path(url)) >= MiB)
            offset = offset_of(client, url)  # the HEAD interrupts the stalled request
            assert MiB <= offset <= 3 * MiB // 2
            assert patch(client, url, offset, data[offset:]).status_code == 204
            stalled.settimeout(10)
            assert stalled.recv(4096).startswith(b"HTTP/1.1 204")  # it got its answer too
        finally:
            stalled.close()
    assert tus_server.data_path(url).read_bytes() == data


def test_lock_held_too_long_is_423_never_500(tus_server_factory: Factory, owner: str) -> None:
    server = tus_server_factory(lock_wait=0.3)
    set_key(server, "finish-delay", "3")  # the finish hook runs under the lock
    with server.client(owner) as client, server.client(owner) as other:
        url = create(client, 4)
        thread, box = in_thread(lambda: patch(client, url, 0, b"data"))
        wait_for(lambda: file_size(server.data_path(url)) == 4)
        busy = other.head(url)
        assert busy.status_code == 423
        assert busy.headers["retry-after"]
        assert busy.headers["tus-resumable"] == "1.0.0"
        assert error_of(other.get(url, headers={"X-HTTP-Method-Override": "DELETE"})) == "locked"
        thread.join(30)
        assert box[0].status_code == 204
        assert other.head(url).status_code == 200
    assert finished_runs(server, url) == 1


def test_kill_9_mid_upload_then_resume(tus_server_factory: Factory, owner: str) -> None:
    server = tus_server_factory(lock_ttl=2.0)
    data = os.urandom(8 * MiB)
    with server.client(owner) as client:
        url = create(client, len(data))
        thread, _ = in_thread(lambda: patch(client, url, 0, slow_body(data, pause=0.005)))
        wait_for(lambda: file_size(server.data_path(url)) >= 2 * MiB)
        server.kill()  # SIGKILL mid-body: no cleanup of any kind
        thread.join(30)
    server.restart()
    with server.client(owner) as client:
        # The dead process's lock lingers for its TTL: 423 until then, never 500.
        statuses: list[int] = []

        def head_ok() -> bool:
            statuses.append(client.head(url).status_code)
            return statuses[-1] == 200

        wait_for(head_ok, timeout=30)
        assert set(statuses) <= {200, 423}
        offset = offset_of(client, url)
        assert 2 * MiB <= offset < len(data)
        assert server.data_path(url).read_bytes() == data[:offset]
        assert patch(client, url, offset, data[offset:]).status_code == 204
    assert server.data_path(url).read_bytes() == data
    assert finished_runs(server, url) == 1


def limit_file_size() -> None:
    """preexec_fn: files this process writes stop at 3 MiB (EFBIG, as a full disk would)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (3 * MiB, 3 * MiB))


def test_full_storage_is_507_and_the_upload_stays_resumable(tus_server_factory: Factory, owner: str) -> None:
    server = tus_server_factory(preexec_fn=limit_file_size)
    data = os.urandom(5 * MiB)
    with server.client(owner) as client:
        url = create(client, len(data))
        response = patch(client, url, 0, data)
        assert response.status_code == 507
        assert error_of(response) == "insufficient_storage"
        assert response.headers["upload-offset"] == str(3 * MiB)
        assert offset_of(client, url) == 3 * MiB  # the bytes that made it are kept

        checked = create(client, len(data))
        refused = patch(client, checked, 0, data, Upload_Checksum=checksum("sha1", data))
        assert refused.status_code == 507
        assert offset_of(client, checked) == 0  # an unverified chunk never shows
    server.restart()  # room again
    with server.client(owner) as client:
        assert patch(client, url, 3 * MiB, data[3 * MiB :]).status_code == 204
        assert patch(client, checked, 0, data, Upload_Checksum=checksum("sha1", data)).status_code == 204
    assert server.data_path(url).read_bytes() == data
    assert server.data_path(checked).read_bytes() == data


def test_finish_hook_runs_once_when_the_last_patch_is_repeated(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 6)
        assert patch(client, url, 0, b"abc").status_code == 204
        assert patch(client, url, 3, b"def").status_code == 204
        assert patch(client, url, 3, b"def").status_code == 409  # the retry of a lost answer
        again = patch(client, url, 6, b"")
        assert again.status_code == 204 and again.headers["upload-offset"] == "6"
        assert client.head(url).status_code == 200
    assert finished_runs(tus_server, url) == 1


def test_finish_hook_runs_once_across_two_nodes(
    tus_server_factory: Factory, tmp_path: Any, owner: str
) -> None:
    nodes = [tus_server_factory(directory=tmp_path / "shared", prefix="tus-two-nodes:") for _ in range(2)]
    set_key(nodes[0], "finish-delay", "0.3")  # widen the window
    size = 64 * 1024
    data = os.urandom(size)
    clients = [node.client(owner) for node in nodes]
    try:
        url = create(clients[0], size)
        assert patch(clients[1], url, 0, data[:-1]).status_code == 204
        barrier = threading.Barrier(8)

        def last_patch(i: int) -> httpx.Response:
            barrier.wait()
            return patch(clients[i % 2], url, size - 1, data[-1:])

        def head(i: int) -> int:
            barrier.wait()
            return clients[i % 2].head(url).status_code

        runs = [in_thread(lambda i=i: last_patch(i)) for i in range(4)]
        runs += [in_thread(lambda i=i: head(i)) for i in range(4)]
        for thread, _ in runs:
            thread.join(60)
        patches = [box[0] for _, box in runs[:4]]
        heads = [box[0] for _, box in runs[4:]]
        assert {r.status_code for r in patches} <= {204, 409, 423}, patches
        # A PATCH interrupted by a HEAD before its byte arrived answers 204 at size - 1.
        finishers = [r for r in patches if r.status_code == 204 and r.headers["upload-offset"] == str(size)]
        assert len(finishers) == 1, patches
        assert set(heads) <= {200, 423}, heads
        for client in clients:
            assert client.head(url).status_code == 200
    finally:
        for client in clients:
            client.close()
    assert nodes[0].data_path(url).read_bytes() == data
    assert finished_runs(nodes[0], url) == 1


def test_failed_finish_hook_answers_500_and_runs_again_later(tus_server_factory: Factory, owner: str) -> None:
    server = tus_server_factory()
    set_key(server, "fail-finish", "1")
    with server.client(owner) as client:
        url = create(client, 3)
        response = patch(client, url, 0, b"abc")
        assert response.status_code == 500
        assert error_of(response) == "finish_failed"
        assert "Traceback" not in response.text and "/" not in response.json()["error"]["message"]
        assert client.head(url).status_code == 500  # still failing: still not finished
        set_key(server, "fail-finish", None)
        head = client.head(url)  # tus-js-client's retry: HEAD shows offset == length
        assert head.status_code == 200 and head.headers["upload-offset"] == "3"
        assert client.head(url).status_code == 200
        assert patch(client, url, 3, b"").status_code == 204
    assert finished_runs(server, url) == 1


def test_per_owner_caps_answer_429(tus_server_factory: Factory, owner: str, other_owner: str) -> None:
    server = tus_server_factory(max_uploads=2, max_bytes=1000, max_size=2000)
    with server.client(owner) as client, server.client(other_owner) as other:
        first = create(client, 400)
        second = create(client, 400)
        third = client.post("/files/", headers={"Upload-Length": "1"})
        assert third.status_code == 429
        assert int(third.headers["retry-after"]) > 0
        assert error_of(third) == "too_many_uploads"
        assert not list(server.uploads.glob("*.info"))[2:]  # nothing was created
        create(other, 400)  # caps are per owner
        create(client, 0)  # a zero-length upload is finished at once: never counted

        assert client.delete(second).status_code == 204  # termination releases
        assert client.post("/files/", headers={"Upload-Length": "700"}).status_code == 429  # bytes
        second = create(client, 600)
        assert patch(client, first, 0, b"x" * 400).status_code == 204  # completion releases
        # A deferred length counts as max_size (2000 > 1000) until it is known...
        assert client.post("/files/", headers={"Upload-Defer-Length": "1"}).status_code == 429
    server2 = tus_server_factory(max_uploads=5, max_bytes=2500, max_size=2000)
    with server2.client(owner) as client:
        deferred = create(client, None)
        assert client.post("/files/", headers={"Upload-Length": "600"}).status_code == 429
        assert patch(client, deferred, 0, b"", Upload_Length="100").status_code == 204
        create(client, 600)  # ...and as its length once declared
        stale = create(client, 1000)
        assert client.post("/files/", headers={"Upload-Length": "1000"}).status_code == 429
        backdate(server2.data_path(stale), 7200)  # expired: its reservation is stale
        create(client, 1000)


def test_creation_with_upload_over_the_cap_writes_nothing(tus_server_factory: Factory, owner: str) -> None:
    server = tus_server_factory(max_uploads=1)
    with server.client(owner) as client:
        create(client, 10)
        response = client.post(
            "/files/", headers={"Upload-Length": "5", "Content-Type": OCTETS}, content=b"hello"
        )
        assert response.status_code == 429
    assert len(list(server.uploads.glob("*.info"))) == 1


def test_no_stack_traces_in_responses(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        for response in (
            client.post("/files/", headers={"Upload-Length": "x" * 100}),
            client.patch("/files/0123456789abcdef0123456789abcdef", content=b"x"),
            client.head("/files/%2e%2e%2fetc%2fpasswd"),
        ):
            assert response.status_code < 500
            assert "Traceback" not in response.text
    raw = httpx.get(tus_server.base_url + "/files/0123456789abcdef0123456789abcdef")
    assert raw.status_code == 405  # 405 before 412: GET is never served


def test_redis_down_answers_423_and_the_upload_resumes(
    tus_server_factory: Factory, tmp_path: Any, owner: str
) -> None:
    from tests.support import free_port

    node = tmp_path / "shared"
    server = tus_server_factory(node)
    with server.client(owner) as client:
        url = create(client, 10)
        assert patch(client, url, 0, b"abc").status_code == 204
    server.stop()
    url = "/files/" + url.rsplit("/", 1)[-1]  # each server has its own port
    # The same files, but a Redis that nobody answers: lock and quota are unavailable.
    dead = TusServer(node, f"redis://127.0.0.1:{free_port()}", prefix=server.prefix).start()
    try:
        with dead.client(owner) as client:
            for response in (
                client.head(url),
                patch(client, url, 3, b"def"),
                client.post("/files/", headers={"Upload-Length": "5"}),
            ):
                # tus-js-client retries 423 and restarts the upload on a 5xx HEAD.
                assert response.status_code == 423, response.text
                assert response.headers["retry-after"] == "5"
                if response.request.method != "HEAD":
                    assert error_of(response) == "unavailable"
    finally:
        dead.stop()
    server.start()
    with server.client(owner) as client:
        assert offset_of(client, url) == 3  # nothing was written meanwhile
        assert patch(client, url, 3, b"defghij").status_code == 204

"""The protocol in-process: the handler on the file store with the memory locker and quota,
over ``httpx.ASGITransport`` (no server, no Redis), at the service's default settings
unless a test says otherwise. The real-Redis tests beside it cover the same handler
with the Redis locker and quota."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.tus.memory_app import (
    OCTETS,
    MemoryTus,
    build,
    create,
    patch,
    sha1_header,
    upload_id,
)
from tusd_py.tus import BackendUnavailable, MemoryLocker, MemoryStorageQuota

MiB = 1 << 20


@pytest.fixture
def tus(tmp_path: Path) -> MemoryTus:
    return build(tmp_path / "uploads")


async def test_options_answers_200_with_every_extension(tus: MemoryTus) -> None:
    async with tus.client() as client:
        response = await client.options("/files/")
    assert response.status_code == 200
    assert response.headers["tus-extension"].split(",") == [
        "creation",
        "creation-with-upload",
        "checksum",
        "creation-defer-length",
        "termination",
        "expiration",
        "concatenation",
        "concatenation-unfinished",
    ]


async def test_create_write_and_finish_once(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        url = await create(client, 6)
        assert (await patch(client, url, 0, b"abc")).status_code == 204
        done = await patch(client, url, 3, b"def")
        assert done.status_code == 204 and done.headers["upload-offset"] == "6"
        head = await client.head(url)
        assert head.status_code == 200 and head.headers["upload-offset"] == "6"
    assert tus.data_path(url).read_bytes() == b"abcdef"
    assert tus.recorder.finished == [upload_id(url)]


# -- checksums, content types, offsets -------------------------------------------------------


async def test_a_digest_of_the_wrong_length_is_a_mismatch(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        url = await create(client, 4)
        # 21 bytes decoded: well-formed base64, but it cannot be sha1 of anything.
        wrong = await patch(client, url, 0, b"data", Upload_Checksum="sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        assert wrong.status_code == 460
        mismatch = await patch(client, url, 0, b"data", Upload_Checksum=sha1_header(b"other"))
        assert mismatch.status_code == 460
        assert (await client.head(url)).headers["upload-offset"] == "0"  # chunk discarded
        right = await patch(client, url, 0, b"data", Upload_Checksum=sha1_header(b"data"))
        assert right.status_code == 204 and right.headers["upload-offset"] == "4"


async def test_post_with_a_body_of_another_type_is_415_and_creates_nothing(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        for content_type in ("text/plain", None):
            headers = {"Upload-Length": "5"}
            if content_type is not None:
                headers["Content-Type"] = content_type
            response = await client.post("/files/", headers=headers, content=b"hello")
            assert response.status_code == 415, content_type
            assert "location" not in response.headers
        assert not list(tus.directory.glob("*.info"))
        assert await tus.quota.held("alice") == {}
        # Without a body the Content-Type does not matter.
        bodiless = await client.post("/files/", headers={"Upload-Length": "5", "Content-Type": "text/plain"})
        assert bodiless.status_code == 201
        with_body = await client.post(
            "/files/", headers={"Upload-Length": "5", "Content-Type": OCTETS}, content=b"hello"
        )
        assert with_body.status_code == 201 and with_body.headers["upload-offset"] == "5"


async def test_409_tells_the_real_offset(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        url = await create(client, 10)
        assert (await patch(client, url, 0, b"abc")).status_code == 204
        response = await patch(client, url, 1, b"x")
    assert response.status_code == 409
    assert response.headers["upload-offset"] == "3"


async def test_a_backend_outage_answers_423_with_retry_after(tmp_path: Path) -> None:
    class DownLocker(MemoryLocker):
        @contextlib.asynccontextmanager
        async def lock(self, upload_id: str, **kwargs: Any) -> AsyncIterator[Any]:
            raise BackendUnavailable("redis is down")
            yield  # pragma: no cover

    tus = build(tmp_path)
    async with tus.client("alice") as client:
        url = await create(client, 10)
        tus.handler.locker = DownLocker()
        for response in (await client.head(url), await patch(client, url, 0, b"x")):
            # tus-js-client retries 423 on HEAD; any other non-2xx restarts the upload.
            assert response.status_code == 423
            assert response.headers["retry-after"] == "5"
            assert response.headers["tus-resumable"] == "1.0.0"


async def test_a_bodiless_creation_takes_no_lock_but_an_empty_one_or_one_with_a_body_does(
    tmp_path: Path,
) -> None:
    class CountingLocker(MemoryLocker):
        def __init__(self) -> None:
            super().__init__()
            self.locked: list[str] = []

        def lock(self, upload_id: str, **kwargs: Any) -> Any:
            self.locked.append(upload_id)
            return super().lock(upload_id, **kwargs)

    tus = build(tmp_path)
    tus.handler.locker = locker = CountingLocker()
    async with tus.client("alice") as client:
        bare = await create(client, 10)  # two Redis round trips fewer per upload with Redis
        assert locker.locked == []
        assert (await client.head(bare)).headers["upload-offset"] == "0"
        empty = await create(client, 0)  # complete at once: its finish runs under the lock
        assert locker.locked[-1:] == [upload_id(empty)] and upload_id(empty) in tus.recorder.finished
        with_body = await client.post(
            "/files/", headers={"Upload-Length": "5", "Content-Type": OCTETS}, content=b"hello"
        )
        assert with_body.status_code == 201
        assert locker.locked[-1] == upload_id(with_body.headers["location"])
    assert upload_id(bare) not in tus.recorder.finished


# -- eviction of idle uploads ----------------------------------------------------------------


async def test_a_client_that_abandons_200_uploads_can_still_upload(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        for _ in range(200):
            url = await create(client, 1000, Upload_Metadata="")
            assert (await patch(client, url, 0, b"x" * 10)).status_code == 204
        for _ in range(3):
            url = await create(client, 5)
            assert (await patch(client, url, 0, b"hello")).status_code == 204
            assert upload_id(url) in tus.recorder.finished


async def test_idle_uploads_make_room_oldest_first(tmp_path: Path) -> None:
    tus = build(tmp_path, max_uploads=3)
    async with tus.client("alice") as client:
        urls = [await create(client, 10) for _ in range(3)]
        for url in urls:
            assert (await patch(client, url, 0, b"abc")).status_code == 204
        refused = await client.post("/files/", headers={"Upload-Length": "10"})
        assert refused.status_code == 429  # none idle yet: nothing to evict
        assert refused.headers["retry-after"]
        tus.age(urls[1], 600)
        tus.age(urls[2], 120)
        fresh = await create(client, 10)  # evicts urls[1], the least recently written
        assert (await client.head(urls[1])).status_code == 404
        assert (await client.head(urls[2])).status_code == 200
        assert (await client.head(urls[0])).status_code == 200
        assert tus.recorder.terminated == [upload_id(urls[1])]  # the termination path
        assert set(await tus.quota.held("alice")) == {upload_id(u) for u in (urls[0], urls[2], fresh)}


async def test_the_bytes_cap_evicts_too_and_never_another_users_uploads(tmp_path: Path) -> None:
    tus = build(tmp_path, max_bytes=100)
    async with tus.client("alice") as alice, tus.client("bob") as bob:
        bobs = await create(bob, 60)
        tus.age(bobs, 3600)
        old = await create(alice, 60)
        assert (await alice.post("/files/", headers={"Upload-Length": "50"})).status_code == 429
        tus.age(old, 3600)
        await create(alice, 50)
        assert (await alice.head(old)).status_code == 404
        assert (await bob.head(bobs)).status_code == 200


async def test_an_idle_unfinished_final_is_evicted_with_its_parts(tmp_path: Path) -> None:
    tus = build(tmp_path, max_uploads=3)
    async with tus.client("alice") as client:
        part1 = await create(client, 4, Upload_Concat="partial")
        part2 = await create(client, 4, Upload_Concat="partial")
        response = await client.post("/files/", headers={"Upload-Concat": f"final;{part1} {part2}"})
        assert response.status_code == 201
        final = response.headers["location"]
        for url in (part1, part2, final):
            tus.age(url, 600)
        await create(client, 1)
        for url in (part1, part2, final):
            assert (await client.head(url)).status_code == 404


# -- concatenation ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
async def test_concatenation_unfinished(tus: MemoryTus, order: tuple[int, int]) -> None:
    pieces = [os.urandom(1000), os.urandom(500)]
    async with tus.client("alice") as client:
        parts = [await create(client, len(piece), Upload_Concat="partial") for piece in pieces]
        response = await client.post("/files/", headers={"Upload-Concat": f"final;{parts[0]} {parts[1]}"})
        assert response.status_code == 201
        assert "upload-offset" not in response.headers
        final = response.headers["location"]
        head = await client.head(final)
        assert head.status_code == 200
        assert "upload-offset" not in head.headers  # not assembled yet
        assert head.headers["upload-length"] == "1500"
        first, second = order
        assert (await patch(client, parts[first], 0, pieces[first])).status_code == 204
        assert tus.recorder.finished == []
        assert "upload-offset" not in (await client.head(final)).headers
        assert (await patch(client, parts[second], 0, pieces[second])).status_code == 204
        assert tus.recorder.finished == [upload_id(final)]  # assembled by that PATCH, once
        head = await client.head(final)
        assert head.headers["upload-offset"] == head.headers["upload-length"] == "1500"
        assert tus.recorder.finished == [upload_id(final)]
        assert (await patch(client, final, 1500, b"x")).status_code == 403
    assert tus.data_path(final).read_bytes() == b"".join(pieces)
    assert await tus.quota.held("alice") == {}


async def test_an_unfinished_final_with_a_deferred_part(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        part = await create(client, None, Upload_Concat="partial")
        final = (await client.post("/files/", headers={"Upload-Concat": f"final;{part}"})).headers["location"]
        head = await client.head(final)
        assert head.headers["upload-defer-length"] == "1" and "upload-offset" not in head.headers
        assert (await patch(client, part, 0, b"ab", Upload_Length="3")).status_code == 204
        assert (await client.head(final)).headers["upload-length"] == "3"
        assert (await patch(client, part, 2, b"c")).status_code == 204
        assert (await client.head(final)).headers["upload-offset"] == "3"
    assert tus.data_path(final).read_bytes() == b"abc"


async def test_an_unfinished_final_goes_with_any_of_its_parts(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        kept = await create(client, 1, Upload_Concat="partial")
        gone = await create(client, 1, Upload_Concat="partial")
        final = (await client.post("/files/", headers={"Upload-Concat": f"final;{kept} {gone}"})).headers[
            "location"
        ]
        assert (await client.delete(gone)).status_code == 204
        assert (await client.head(final)).status_code == 404
        assert (await client.head(kept)).status_code == 200
        assert upload_id(final) not in await tus.quota.held("alice")


async def test_foreign_and_missing_parts_answer_alike_without_touching_a_lock(tus: MemoryTus) -> None:
    async with tus.client("alice") as alice, tus.client("bob") as bob:
        part = await create(alice, 10, Upload_Concat="partial")
        missing = "/files/0123456789abcdef0123456789abcdef"
        async with tus.handler.locker.lock(upload_id(part), wait=0) as held:  # alice is writing
            foreign = await bob.post("/files/", headers={"Upload-Concat": f"final;{part}"})
            absent = await bob.post("/files/", headers={"Upload-Concat": f"final;{missing}"})
            assert not held.interrupted  # bob's request never asked for alice's lock
        assert foreign.status_code == absent.status_code == 400  # not 423: no lock was waited for
        assert foreign.json() == absent.json()


async def test_a_part_named_twice_is_400(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        part = await create(client, 1, Upload_Concat="partial")
        assert (await patch(client, part, 0, b"x")).status_code == 204
        response = await client.post("/files/", headers={"Upload-Concat": f"final;{part} {part}"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_concat"
        # A completed partial may still feed several finals, each its own.
        for _ in range(2):
            again = await client.post("/files/", headers={"Upload-Concat": f"final;{part}"})
            assert again.status_code == 201 and again.headers["upload-offset"] == "1"


async def test_a_final_reserves_its_own_bytes(tmp_path: Path) -> None:
    tus = build(tmp_path, max_bytes=100)
    async with tus.client("alice") as client:
        part = await create(client, 60, Upload_Concat="partial")
        assert (await patch(client, part, 0, b"p" * 60)).status_code == 204
        await create(client, 50)  # pending: 50 of 100
        response = await client.post("/files/", headers={"Upload-Concat": f"final;{part}"})
        assert response.status_code == 429  # 50 + 60 would pass the cap
        unfinished = await create(client, 40, Upload_Concat="partial")  # pending: 90
        early = await client.post("/files/", headers={"Upload-Concat": f"final;{unfinished}"})
        assert early.status_code == 429  # an unfinished final reserves its parts' sum too


async def test_concurrent_heads_and_patches_finish_once(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        url = await create(client, 3)
        assert (await patch(client, url, 0, b"ab")).status_code == 204
        results = await asyncio.gather(patch(client, url, 2, b"c"), *(client.head(url) for _ in range(5)))
    assert results[0].status_code == 204
    assert {r.status_code for r in results[1:]} <= {200, 423}
    assert tus.recorder.finished == [upload_id(url)]


async def test_memory_storage_quota_keeps_finished_uploads_and_frees_on_delete(tmp_path: Path) -> None:
    """The storage quota (unlike the pending caps) still counts an upload once it is
    complete; only a removal frees it. Past it: 403, which tus clients do not retry."""
    storage = MemoryStorageQuota(limit=1000)
    tus = build(tmp_path, storage=storage)
    async with tus.client("alice") as client:
        url = await create(client, 600)
        assert (await patch(client, url, 0, b"x" * 600)).status_code == 204
        assert await tus.quota.held("alice") == {}  # the pending caps let go at completion
        assert await storage.uploads("alice") == [upload_id(url)]  # the storage quota does not
        refused = await client.post("/files/", headers={"Upload-Length": "600"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "storage_quota_exceeded"
        assert "1000 bytes" in refused.json()["error"]["message"]
        assert (await client.delete(url)).status_code == 204
        assert await storage.uploads("alice") == []
        await create(client, 600)


class ChangedAfterRead:
    """Wraps the store's ``get``: counts the reads, and changes the upload right after the
    first one (as another node would between a PATCH's read and its lock)."""

    def __init__(self, tus: MemoryTus, change: Any = None) -> None:
        self.reads = 0
        self._get = tus.store.get
        self._change = change
        tus.store.get = self.get  # type: ignore[method-assign]

    async def get(self, upload_id: str) -> Any:
        self.reads += 1
        info = await self._get(upload_id)
        if self.reads == 1 and self._change is not None:
            await self._change(upload_id)
        return info


def another_node(tus: MemoryTus) -> MemoryTus:
    """A second handler on the same upload directory: a process that has seen nothing."""
    return build(tus.directory)


async def test_a_patch_reads_no_description_once_this_process_saw_the_upload(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        url = await create(client, 9)
        reads = ChangedAfterRead(tus)
        response = await patch(client, url, 0, b"abc")
        assert response.status_code == 204 and response.headers["upload-offset"] == "3"
        assert (await patch(client, url, 3, b"def")).status_code == 204
        assert reads.reads == 0  # the writer opened under the lock checks the file
    other = another_node(tus)
    async with other.client("alice") as client:
        reads = ChangedAfterRead(other)
        done = await patch(client, url, 6, b"ghi")
        assert done.status_code == 204 and done.headers["upload-offset"] == "9"
        assert reads.reads == 1  # before the lock, once
    assert tus.data_path(url).read_bytes() == b"abcdefghi"
    assert other.recorder.finished == [upload_id(url)]


async def test_bytes_another_node_wrote_answer_409_with_the_real_offset(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        url = await create(client, 6)
        with tus.data_path(url).open("ab") as data:  # another node on the shared volume
            data.write(b"xy")
        response = await patch(client, url, 0, b"abc")
        assert response.status_code == 409
        assert response.headers["upload-offset"] == "2"
        assert tus.data_path(url).read_bytes() == b"xy"  # nothing of the stale PATCH was written
        resumed = await patch(client, url, 2, b"abcd")
        assert resumed.status_code == 204 and resumed.headers["upload-offset"] == "6"
    assert tus.data_path(url).read_bytes() == b"xyabcd"


async def test_an_upload_another_node_removed_answers_404(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        url = await create(client, 6)
        await tus.store.remove(upload_id(url))
        assert (await patch(client, url, 0, b"abc")).status_code == 404
    assert not tus.data_path(url).exists()


async def test_a_foreign_upload_this_process_saw_reads_like_a_missing_one(tus: MemoryTus) -> None:
    async with tus.client("alice") as client:
        url = await create(client, 6)
        assert (await patch(client, url, 0, b"abc")).status_code == 204
    reads = ChangedAfterRead(tus)
    async with tus.client("bob") as client:
        foreign = await patch(client, url, 3, b"def")
        missing = await patch(client, url.rsplit("/", 1)[0] + "/" + "0" * 32, 3, b"def")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    assert reads.reads == 2  # one read each: the entry alice's PATCH left is not used for bob
    assert tus.data_path(url).read_bytes() == b"abc"


async def test_bytes_written_between_the_read_and_the_lock_answer_409(tus: MemoryTus) -> None:
    other = another_node(tus)
    async with tus.client("alice") as client:
        url = await create(client, 6)

    async def another_writer(_: str) -> None:
        with tus.data_path(url).open("ab") as data:
            data.write(b"xy")

    ChangedAfterRead(other, another_writer)
    async with other.client("alice") as client:
        response = await patch(client, url, 0, b"abc")
        assert response.status_code == 409
        assert response.headers["upload-offset"] == "2"
    assert tus.data_path(url).read_bytes() == b"xy"  # nothing of the stale PATCH was written


async def test_an_upload_removed_between_the_read_and_the_lock_answers_404(tus: MemoryTus) -> None:
    other = another_node(tus)
    async with tus.client("alice") as client:
        url = await create(client, 6)
    ChangedAfterRead(other, other.store.remove)
    async with other.client("alice") as client:
        response = await patch(client, url, 0, b"abc")
        assert response.status_code == 404
    assert not tus.data_path(url).exists()

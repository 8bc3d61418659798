"""The local-disk store on a temporary directory: layout, offsets, staging, concatenation."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import pytest

from tusd_py.tus.filestore import FileStore
from tusd_py.tus.store import OffsetMismatch, UploadBusy, UploadExpired, UploadInfo, UploadNotFound


def new_info(length: int | None, **fields: object) -> UploadInfo:
    return UploadInfo(id=uuid.uuid4().hex, owner="alice", length=length, created_at=time.time(), **fields)  # type: ignore[arg-type]


async def test_create_lays_out_data_and_description(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    info = new_info(10, metadata={"filename": "../../etc/passwd"}, metadata_header="filename Li4=")
    await store.create(info)
    assert store.data_path(info.id) == tmp_path / info.id
    assert (tmp_path / info.id).read_bytes() == b""
    document = json.loads((tmp_path / f"{info.id}.info").read_text())
    assert document["owner"] == "alice" and document["length"] == 10
    # Nothing named after metadata exists anywhere.
    assert sorted(os.listdir(tmp_path)) == sorted([".tmp", info.id, f"{info.id}.info"])
    got = await store.get(info.id)
    assert (got.offset, got.length, got.owner, got.finished) == (0, 10, "alice", False)
    assert got.metadata == {"filename": "../../etc/passwd"}
    assert got.storage["Path"] == str(tmp_path / info.id)


async def test_ids_that_are_not_upload_ids_never_reach_the_disk(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for bad in ["../x", "", "ABCDEF0123456789ABCDEF0123456789", "a" * 33]:
        with pytest.raises(UploadNotFound):
            await store.get(bad)


async def test_offset_is_the_size_of_the_data_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path, batch_size=1000)
    info = new_info(50_000)
    await store.create(info)
    data = os.urandom(50_000)
    writer = await store.open_writer(info.id, 0)
    try:
        for start in range(0, len(data), 777):  # many chunks, many batches in flight
            await writer.write(data[start : start + 777])
        assert await writer.commit() == len(data)
    finally:
        writer.close()
    assert (tmp_path / info.id).read_bytes() == data
    assert (await store.get(info.id)).offset == len(data)
    # The offset is never stored apart from the bytes: truncating the file moves it.
    os.truncate(tmp_path / info.id, 123)
    assert (await store.get(info.id)).offset == 123


async def test_writer_refuses_a_wrong_offset_and_a_second_writer(tmp_path: Path) -> None:
    # The data is opened in the thread of the first write: its checks come from flush.
    store = FileStore(tmp_path, batch_size=4)
    info = new_info(10)
    await store.create(info)
    stale = await store.open_writer(info.id, 5)
    await stale.write(b"abcdef")
    with pytest.raises(OffsetMismatch) as mismatch:
        await stale.flush()
    stale.close()
    assert mismatch.value.stored == 0
    assert (tmp_path / info.id).read_bytes() == b""  # a failed check writes nothing
    first = await store.open_writer(info.id, 0)
    await first.write(b"abcd")  # a full batch: opened and written in a thread
    await first.flush()
    try:
        second = await store.open_writer(info.id, 4)
        with pytest.raises(UploadBusy):
            await second.flush()  # no byte: flush still opens and checks
        second.close()
    finally:
        first.close()
    third = await store.open_writer(info.id, 4)  # the guard goes with the first writer
    await third.write(b"ef")
    assert await third.commit() == 6
    assert (tmp_path / info.id).read_bytes() == b"abcdef"


async def test_writer_refuses_an_upload_idle_since_before_the_bound(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    info = new_info(10)
    await store.create(info)
    os.utime(tmp_path / info.id, (1000.0, 1000.0))
    old = await store.open_writer(info.id, 0, written_since=2000.0)
    await old.write(b"abc")
    with pytest.raises(UploadExpired):
        await old.flush()
    old.close()
    assert (tmp_path / info.id).read_bytes() == b""
    fresh = await store.open_writer(info.id, 0, written_since=500.0)
    await fresh.write(b"abc")
    assert await fresh.commit() == 3


async def test_a_writer_closed_before_its_first_write_never_opens(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    info = new_info(10)
    await store.create(info)
    (await store.open_writer(info.id, 0)).close()
    writer = await store.open_writer(info.id, 0)  # no guard was left behind
    await writer.write(b"x")
    assert await writer.commit() == 1


async def test_staged_writer_appends_only_on_commit(tmp_path: Path) -> None:
    store = FileStore(tmp_path, batch_size=100)
    info = new_info(1000)
    await store.create(info)
    (tmp_path / info.id).write_bytes(b"x" * 10)

    rejected = await store.open_writer(info.id, 10, staged=True, hasher=hashlib.sha1())
    await rejected.write(b"y" * 500)
    await rejected.flush()
    assert (tmp_path / info.id).read_bytes() == b"x" * 10  # nothing visible yet
    await rejected.discard()
    assert (tmp_path / info.id).read_bytes() == b"x" * 10
    assert list((tmp_path / ".tmp").iterdir()) == []

    accepted = await store.open_writer(info.id, 10, staged=True, hasher=hashlib.sha256())
    for _ in range(5):
        await accepted.write(b"z" * 99)
    await accepted.flush()
    assert accepted.digest() == hashlib.sha256(b"z" * 495).digest()
    assert await accepted.commit() == 505
    assert (tmp_path / info.id).read_bytes() == b"x" * 10 + b"z" * 495
    assert list((tmp_path / ".tmp").iterdir()) == []


async def test_declared_length_is_set_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    info = new_info(None)
    await store.create(info)
    assert (await store.get(info.id)).deferred
    await store.declare_length(info.id, 42)
    await store.declare_length(info.id, 7)  # never changed afterwards
    assert (await store.get(info.id)).length == 42


async def test_concatenation_copies_the_parts_in_order(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    chunks = [os.urandom(3000), b"", os.urandom(70_000)]
    parts = []
    for chunk in chunks:
        part = new_info(len(chunk), partial=True)
        await store.create(part)
        (tmp_path / part.id).write_bytes(chunk)
        parts.append(part.id)
    order = [parts[2], parts[0], parts[1], parts[0]]  # a part may be used twice
    expected = chunks[2] + chunks[0] + chunks[1] + chunks[0]
    final = new_info(len(expected), parts=tuple(order))
    await store.concatenate(final, order)
    got = await store.get(final.id)
    assert got.final and got.complete and got.offset == len(expected)
    assert (tmp_path / final.id).read_bytes() == expected
    with pytest.raises(UploadNotFound):  # a length that does not add up creates nothing
        await store.concatenate(new_info(1, parts=(parts[0],)), [parts[0]])
    assert len(await store.scan_unfinished()) == 4


async def test_remove_and_finished_marker(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    info = new_info(0)
    await store.create(info)
    await store.mark_finished(info.id)
    await store.mark_finished(info.id)  # idempotent
    assert (await store.get(info.id)).finished
    await store.remove(info.id)
    with pytest.raises(UploadNotFound):
        await store.get(info.id)
    assert sorted(os.listdir(tmp_path)) == [".tmp"]


async def test_scan_and_leftover_sweep(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    kept = new_info(5)
    await store.create(kept)
    orphan_data = tmp_path / uuid.uuid4().hex  # a crash between data and description
    orphan_data.write_bytes(b"abc")
    torn = tmp_path / ".tmp" / "whatever.chunk"
    torn.write_bytes(b"unverified")
    foreign = tmp_path / "README"  # not ours: never touched
    foreign.write_text("hi")
    assert [info.id for info in await store.scan_unfinished()] == [kept.id]
    assert await store.sweep_temporary(time.time() - 3600) == 0  # all of it is recent
    old = time.time() - 7200
    for path in (orphan_data, torn, tmp_path / kept.id, foreign):
        os.utime(path, (old, old))
    assert await store.sweep_temporary(time.time() - 3600) == 2
    assert not orphan_data.exists() and not torn.exists()
    assert (tmp_path / kept.id).exists() and foreign.exists()


async def test_an_unfinished_final_is_assembled_once_its_parts_are_complete(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    parts = [new_info(3, partial=True), new_info(2, partial=True)]
    for part in parts:
        await store.create(part)
    final = new_info(None, parts=tuple(part.id for part in parts))
    await store.create(final)
    for part in parts:
        await store.wait_for_part(part.id, final.id)
        await store.wait_for_part(part.id, final.id)  # recorded twice, listed once
    assert await store.waiting_finals(parts[0].id) == [final.id]
    for part, data in zip(parts, (b"abc", b"de"), strict=True):
        writer = await store.open_writer(part.id, 0)
        await writer.write(data)
        await writer.commit()
    await store.assemble(final, list(final.parts))
    await store.assemble(final, list(final.parts))  # again (after a crash): same result
    got = await store.get(final.id)
    assert (got.length, got.offset) == (5, 5)
    assert store.data_path(final.id).read_bytes() == b"abcde"
    await store.remove(parts[0].id)
    assert await store.waiting_finals(parts[0].id) == []
    assert not (tmp_path / f"{parts[0].id}.finals").exists()

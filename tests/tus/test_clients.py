"""tuspy, a real tus client, against the handler under uvicorn."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tusclient import client as tus
from tusclient.exceptions import TusUploadFailed
from tusclient.uploader import Uploader

from tests.tus.helpers import REPO, TusServer, file_size, finished_runs, tuspy_snippet, wait_for

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[TusServer]:
    server = TusServer(tmp_path_factory.mktemp("tuspy"), redis_url, max_size=64 * MiB).start()
    yield server
    server.stop()


def client_snippet(server: TusServer, owner: str, path: Path, db: Path, *, pace: float) -> str:
    return tuspy_snippet(server.files_url, owner, path, db, pace=pace, filename="big.bin")


def test_tuspy_resumes_a_killed_upload_from_a_fresh_process(
    big_server: TusServer, tmp_path: Path, owner: str
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(20 * 1000 * 1000))  # 20 MB in 1 MiB chunks
    db = tmp_path / "urls.json"
    first = subprocess.Popen(
        [sys.executable, "-c", client_snippet(big_server, owner, source, db, pace=0.05)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        url, offset = first.stdout.readline().split()
        assert offset == "0"
        wait_for(lambda: file_size(big_server.data_path(url)) >= 5 * MiB)
        first.kill()  # -9, mid-upload
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert file_size(big_server.data_path(url)) < 20 * 1000 * 1000

    second = subprocess.run(
        [sys.executable, "-c", client_snippet(big_server, owner, source, db, pace=0)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    resumed_url, resumed_offset, done = second.stdout.split()
    assert resumed_url == url  # found through the URL storage
    assert int(resumed_offset) >= 5 * MiB  # resumed, not restarted
    assert done == "done"
    assert big_server.data_path(url).read_bytes() == source.read_bytes()
    assert finished_runs(big_server, url) == 1


def test_tuspy_with_checksums(big_server: TusServer, tmp_path: Path, owner: str) -> None:
    source = tmp_path / "file.bin"
    source.write_bytes(os.urandom(3 * MiB + MiB // 2))
    client = tus.TusClient(big_server.files_url, headers={"Authorization": f"Bearer {owner}"})
    uploader = client.uploader(str(source), chunk_size=MiB, upload_checksum=True)
    uploader.upload()
    assert big_server.data_path(uploader.url).read_bytes() == source.read_bytes()


class LyingUploader(Uploader):
    """tuspy with a broken checksum: every chunk's sha1 is of other bytes."""

    CHECKSUM_ALGORITHM_PAIR = ("sha1", lambda data: hashlib.sha1(data + b"!"))


def test_tuspy_checksum_mismatch_is_460(big_server: TusServer, tmp_path: Path, owner: str) -> None:
    source = tmp_path / "file.bin"
    source.write_bytes(os.urandom(MiB))
    client = tus.TusClient(big_server.files_url, headers={"Authorization": f"Bearer {owner}"})
    uploader = LyingUploader(str(source), client=client, chunk_size=MiB // 2, upload_checksum=True)
    with pytest.raises(TusUploadFailed) as failed:
        uploader.upload()
    assert failed.value.status_code == 460
    assert uploader.get_offset() == 0
    assert big_server.data_path(uploader.url).read_bytes() == b""

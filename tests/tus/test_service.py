"""The tus endpoint of the real service (``python -m tusd_py api``), with real users."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support import Service, User
from tests.tus.helpers import (
    OCTETS,
    REPO,
    TUS,
    backdate,
    create,
    error_of,
    file_size,
    metadata,
    offset_of,
    patch,
    tuspy_snippet,
    wait_for,
)

MiB = 1024 * 1024
MAX = 104_857_600


def tus_client(service: Service, user: User | None) -> httpx.Client:
    client = service.client(user)
    client.headers.update(TUS)
    return client


def uploads_dir(service: Service) -> Path:
    return service.data_dir / "uploads"


def data_file(service: Service, url: str) -> Path:
    return uploads_dir(service) / url.rsplit("/", 1)[-1]


def test_options_advertise_the_service_limits(live: Service) -> None:
    response = httpx.options(live.base_url + "/files/")
    assert response.status_code == 200
    assert response.headers["tus-max-size"] == str(MAX)
    assert "concatenation" in response.headers["tus-extension"].split(",")
    assert "tus-resumable" not in response.headers


def test_100_mb_is_accepted_and_one_byte_more_is_413(live: Service, user: User) -> None:
    with tus_client(live, user) as client:
        url = create(client, MAX)
        body = os.urandom(MiB) * 100
        response = patch(client, url, 0, body[:-1])  # all but the last byte: no task follows
        assert response.status_code == 204
        assert offset_of(client, url) == MAX - 1
        assert client.delete(url).status_code == 204
        refused = client.post("/files/", headers={"Upload-Length": str(MAX + 1)})
        assert refused.status_code == 413
        assert error_of(refused) == "too_large"


def test_401_before_a_byte_is_written(live: Service, user: User) -> None:
    before = sorted(os.listdir(uploads_dir(live)))
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = httpx.post(
            live.base_url + "/files/",
            headers={**TUS, **headers, "Upload-Length": "5", "Content-Type": OCTETS},
            content=b"hello",
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["tus-resumable"] == "1.0.0"
        assert set(response.json()["error"]) == {"code", "message"}
    assert sorted(os.listdir(uploads_dir(live))) == before
    with tus_client(live, user) as client:
        url = create(client, 5)
    anonymous = httpx.Client(headers=TUS)
    assert patch(anonymous, url, 0, b"hello").status_code == 401
    assert data_file(live, url).read_bytes() == b""


def test_another_user_gets_404_and_the_upload_is_untouched(
    live: Service, user: User, other_user: User
) -> None:
    with tus_client(live, user) as client, tus_client(live, other_user) as intruder:
        url = create(client, 10, metadata=metadata(filename="secret.txt"))
        assert patch(client, url, 0, b"mine").status_code == 204
        for response, status in (
            (intruder.head(url), 404),
            (patch(intruder, url, 4, b"theirs"), 404),
            (intruder.delete(url), 404),
            (intruder.post("/files/", headers={"Upload-Concat": f"final;{url}"}), 400),  # as a missing part
        ):
            assert response.status_code == status
            assert "upload-offset" not in response.headers
        assert intruder.head(url).status_code == 404
        assert offset_of(client, url) == 4
    assert data_file(live, url).read_bytes() == b"mine"


def test_unknown_operation_is_refused_before_any_byte(live: Service, user: User) -> None:
    before = sorted(os.listdir(uploads_dir(live)))
    with tus_client(live, user) as client:
        response = client.post(
            "/files/",
            headers={
                "Upload-Length": "5",
                "Upload-Metadata": metadata(operation="nope"),
                "Content-Type": OCTETS,
            },
            content=b"hello",
        )
        assert response.status_code == 400
        assert error_of(response) == "invalid_metadata"
        assert sorted(os.listdir(uploads_dir(live))) == before
        # Partial uploads never become tasks: only the final upload's metadata counts.
        part = create(client, 3, Upload_Concat="partial", metadata=metadata(operation="nope"))
        assert patch(client, part, 0, b"abc").status_code == 204
        bad = client.post(
            "/files/",
            headers={"Upload-Concat": f"final;{part}", "Upload-Metadata": metadata(operation="nope")},
        )
        assert bad.status_code == 400
        good = client.post(
            "/files/",
            headers={"Upload-Concat": f"final;{part}", "Upload-Metadata": metadata(filename="a.txt")},
        )
        assert good.status_code == 201
        assert data_file(live, good.headers["location"]).read_bytes() == b"abc"


def test_expired_upload_is_410(live: Service, user: User) -> None:
    with tus_client(live, user) as client:
        url = create(client, 10)
        assert patch(client, url, 0, b"abc").status_code == 204
        backdate(data_file(live, url), 2 * 86400)  # last write two days ago (expiry: one)
        assert client.head(url).status_code == 410
        assert patch(client, url, 3, b"def").status_code == 410


def test_per_user_caps_are_429(service_factory: Callable[..., Service]) -> None:
    service = service_factory(max_pending_uploads="2", max_pending_bytes="1000")
    user = service.register()
    with tus_client(service, user) as client:
        first = create(client, 100)
        create(client, 100)
        response = client.post("/files/", headers={"Upload-Length": "100"})
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0
        assert client.post("/files/", headers={"Upload-Length": "0"}).status_code == 201
        assert client.delete(first).status_code == 204
        assert client.post("/files/", headers={"Upload-Length": "901"}).status_code == 429
        create(client, 900)


def service_client_snippet(base_url: str, token: str, path: Path, db: Path, pace: float) -> str:
    return tuspy_snippet(base_url + "/files/", token, path, db, pace=pace, filename="data.bin", checksum=True)


def test_kill_9_of_the_api_mid_upload_then_resume_with_tuspy(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    service = service_factory()
    user = service.register()
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(12 * MiB))
    db = tmp_path / "urls.json"
    code = service_client_snippet(service.base_url, user.access_token, source, db, pace=0.05)
    first = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        url = first.stdout.readline().split()[0]
        wait_for(lambda: file_size(data_file(service, url)) >= 4 * MiB)
        service.api.kill()  # kill -9 of the API, mid-upload
    finally:
        first.kill()
        first.wait()
    service.restart_api()
    with tus_client(service, user) as client:
        # The dead API's upload lock outlives it by its TTL: 423 meanwhile, never 500.
        wait_for(lambda: client.head(url).status_code != 423, timeout=30)
        offset = offset_of(client, url)
    assert 4 * MiB <= offset < 12 * MiB
    assert data_file(service, url).read_bytes() == source.read_bytes()[:offset]
    second = subprocess.run(
        [
            sys.executable,
            "-c",
            service_client_snippet(service.base_url, user.access_token, source, db, pace=0),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    resumed_url, resumed_offset, _ = second.stdout.split()
    assert resumed_url == url and int(resumed_offset) == offset
    assert data_file(service, url).read_bytes() == source.read_bytes()

"""tus 1.0.0 over real HTTP: one test per row of the status table, and per extension.

The server is ``tests.tus.server`` (TusHandler + file store + Redis) under
uvicorn in a child process; ``Authorization: Bearer <owner>`` names the caller.
"""

from __future__ import annotations

import email.utils
import os
import socket
import time

import httpx
import pytest

from tests.tus.helpers import (
    OCTETS,
    TusServer,
    backdate,
    checksum,
    create,
    error_of,
    finished_runs,
    metadata,
    offset_of,
    patch,
)

MAX = 10 * 1024 * 1024


# -- OPTIONS, versions, errors ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/files", "/files/", "/files/0123456789abcdef0123456789abcdef"])
def test_options_needs_neither_version_nor_authentication(tus_server: TusServer, path: str) -> None:
    response = httpx.options(tus_server.base_url + path)
    assert response.status_code == 200
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-max-size"] == str(MAX)
    assert set(response.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256", "md5"}
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
        "concatenation",
        "concatenation-unfinished",
    }


@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
def test_missing_or_unsupported_tus_resumable_is_412(tus_server: TusServer, version: str | None) -> None:
    headers = {"Authorization": "Bearer alice", "Upload-Length": "1"}
    if version is not None:
        headers["Tus-Resumable"] = version
    response = httpx.post(tus_server.files_url, headers=headers)
    assert response.status_code == 412
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-resumable"] == "1.0.0"
    assert error_of(response) == "unsupported_version"


def test_unauthenticated_requests_are_401_before_a_byte_is_written(tus_server: TusServer, owner: str) -> None:
    before = set(tus_server.uploads.iterdir())
    anonymous = tus_server.client()
    response = anonymous.post(
        "/files/", headers={"Upload-Length": "5", "Content-Type": OCTETS}, content=b"hello"
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert error_of(response) == "unauthorized"
    assert set(tus_server.uploads.iterdir()) == before

    with tus_server.client(owner) as client:
        url = create(client, 5)
    assert patch(anonymous, url, 0, b"hello").status_code == 401
    assert anonymous.head(url).status_code == 401
    assert anonymous.delete(url).status_code == 401
    assert tus_server.data_path(url).read_bytes() == b""


def test_unknown_methods_are_405_with_tus_headers(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 1)
        response = client.get(url)
        assert response.status_code == 405
        assert response.headers["tus-resumable"] == "1.0.0"
        assert "PATCH" in response.headers["allow"]
        assert client.put("/files/").status_code == 405


# -- POST (creation and its extensions) --------------------------------------------------------


def test_creation_is_201_with_an_absolute_location_and_expiry(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        for path in ("/files", "/files/"):
            response = client.post(path, headers={"Upload-Length": "100"})
            assert response.status_code == 201
            location = response.headers["location"]
            assert location.startswith(f"{tus_server.base_url}/files/")
            assert response.headers["tus-resumable"] == "1.0.0"
            expires = email.utils.parsedate_to_datetime(response.headers["upload-expires"])
            assert expires.timestamp() > time.time()
            assert tus_server.data_path(location).exists()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Upload-Length": "5", "Upload-Defer-Length": "1"},
        {"Upload-Defer-Length": "2"},
        {"Upload-Length": "-5"},
        {"Upload-Length": "five"},
        {"Upload-Length": "5", "Upload-Metadata": "name ***"},
        {"Upload-Length": "5", "Upload-Concat": "sometimes"},
    ],
)
def test_creation_with_bad_headers_is_400(tus_server: TusServer, owner: str, headers: dict[str, str]) -> None:
    before = set(tus_server.uploads.iterdir())
    with tus_server.client(owner) as client:
        response = client.post("/files/", headers=headers)
    assert response.status_code == 400
    error_of(response)
    assert set(tus_server.uploads.iterdir()) == before


def test_creation_above_the_maximum_is_413(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        assert client.post("/files/", headers={"Upload-Length": str(MAX)}).status_code == 201
        response = client.post("/files/", headers={"Upload-Length": str(MAX + 1)})
    assert response.status_code == 413
    assert error_of(response) == "too_large"


def test_zero_length_upload_is_complete_at_once(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        response = client.post("/files/", headers={"Upload-Length": "0"})
        assert response.status_code == 201
        url = response.headers["location"]
        assert "upload-expires" not in response.headers  # complete: tus will not expire it
        head = client.head(url)
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("0", "0")
    assert finished_runs(tus_server, url) == 1


def test_creation_with_upload(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        response = client.post(
            "/files/", headers={"Upload-Length": "11", "Content-Type": OCTETS}, content=b"hello"
        )
        assert response.status_code == 201
        assert response.headers["upload-offset"] == "5"
        url = response.headers["location"]
        assert patch(client, url, 5, b" world").status_code == 204
        assert finished_runs(tus_server, url) == 1

        whole = client.post(
            "/files/",
            headers={
                "Upload-Length": "3",
                "Content-Type": OCTETS,
                "Upload-Checksum": checksum("sha1", b"abc"),
            },
            content=b"abc",
        )
        assert whole.status_code == 201 and whole.headers["upload-offset"] == "3"
        assert finished_runs(tus_server, whole.headers["location"]) == 1
        assert tus_server.data_path(whole.headers["location"]).read_bytes() == b"abc"


def test_pre_create_hook_refuses_before_anything_is_stored(tus_server: TusServer, owner: str) -> None:
    before = set(tus_server.uploads.iterdir())
    with tus_server.client(owner) as client:
        response = client.post(
            "/files/",
            headers={
                "Upload-Length": "5",
                "Upload-Metadata": metadata(operation="bogus"),
                "Content-Type": OCTETS,
            },
            content=b"hello",
        )
    assert response.status_code == 400
    assert error_of(response) == "invalid_metadata"
    assert set(tus_server.uploads.iterdir()) == before


def test_creation_defer_length(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, None)
        head = client.head(url)
        assert head.headers["upload-defer-length"] == "1"
        assert "upload-length" not in head.headers
        assert patch(client, url, 0, b"abc").status_code == 204
        assert patch(client, url, 3, b"", Upload_Length="2").status_code == 400  # below the offset
        too_big = patch(client, url, 3, b"", Upload_Length=str(MAX + 1))
        assert too_big.status_code == 413
        done = patch(client, url, 3, b"def", Upload_Length="6")
        assert done.status_code == 204 and done.headers["upload-offset"] == "6"
        head = client.head(url)
        assert head.headers["upload-length"] == "6"
        assert "upload-defer-length" not in head.headers
        assert patch(client, url, 6, b"", Upload_Length="7").status_code == 400  # set once
    assert finished_runs(tus_server, url) == 1


# -- HEAD --------------------------------------------------------------------------------------


def test_head_reports_offset_length_and_metadata_as_sent(tus_server: TusServer, owner: str) -> None:
    sent = metadata(filename="ünï code.txt", filetype="text/plain") + ",flag"
    with tus_server.client(owner) as client:
        url = create(client, 10, metadata=sent)
        assert patch(client, url, 0, b"1234").status_code == 204
        head = client.head(url)
    assert head.status_code == 200
    assert head.headers["upload-offset"] == "4"
    assert head.headers["upload-length"] == "10"
    assert head.headers["upload-metadata"] == sent
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["tus-resumable"] == "1.0.0"
    assert "upload-expires" in head.headers


def test_head_unknown_is_404_and_expired_is_410(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        missing = client.head("/files/0123456789abcdef0123456789abcdef")
        assert missing.status_code == 404 and "upload-offset" not in missing.headers
        assert client.head("/files/not-an-id").status_code == 404
        url = create(client, 10)
        backdate(tus_server.data_path(url), 7200)  # last write two hours ago; expiry is one
        expired = client.head(url)
        assert expired.status_code == 410 and "upload-offset" not in expired.headers
        assert patch(client, url, 0, b"x").status_code == 410
        assert client.delete(url).status_code == 410


# -- PATCH -------------------------------------------------------------------------------------


def test_patch_is_204_with_the_new_offset_and_expiry(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 6)
        response = patch(client, url, 0, b"abc")
        assert response.status_code == 204
        assert response.headers["upload-offset"] == "3"
        assert response.headers["tus-resumable"] == "1.0.0"
        email.utils.parsedate_to_datetime(response.headers["upload-expires"])
        last = patch(client, url, 3, b"def")
        assert last.headers["upload-offset"] == "6"
    assert tus_server.data_path(url).read_bytes() == b"abcdef"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain"])
def test_patch_with_wrong_content_type_is_415(
    tus_server: TusServer, owner: str, content_type: str | None
) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 3)
        headers = {"Upload-Offset": "0"}
        if content_type:
            headers["Content-Type"] = content_type
        response = client.patch(url, content=b"abc", headers=headers)
        assert response.status_code == 415
        assert offset_of(client, url) == 0


def test_patch_with_a_bad_offset_header_is_400(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 3)
        response = client.patch(url, content=b"abc", headers={"Content-Type": OCTETS})
        assert response.status_code == 400
        assert patch(client, url, 0, b"abc", Upload_Offset="-1").status_code == 400
        assert offset_of(client, url) == 0


def test_patch_at_the_wrong_offset_is_409_and_changes_nothing(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 10)
        assert patch(client, url, 0, b"abc").status_code == 204
        for offset in (0, 2, 5):
            response = patch(client, url, offset, b"zzz")
            assert response.status_code == 409
            assert error_of(response) == "offset_mismatch"
        assert offset_of(client, url) == 3
    assert tus_server.data_path(url).read_bytes() == b"abc"


def test_patch_past_the_length_is_413(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 5)
        response = patch(client, url, 0, b"toolong")  # Content-Length known: refused up front
        assert response.status_code == 413
        assert offset_of(client, url) == 0
        chunked = patch(client, url, 0, iter([b"abc", b"defg"]))  # no Content-Length
        assert chunked.status_code == 413
        assert chunked.headers["upload-offset"] == "5"  # the bytes within the length are kept
    assert tus_server.data_path(url).read_bytes() == b"abcde"
    assert finished_runs(tus_server, url) == 1


def test_patch_to_a_final_upload_is_403(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        part = create(client, 2, Upload_Concat="partial")
        assert patch(client, part, 0, b"ab", Upload_Concat="partial").status_code == 204
        final = client.post("/files/", headers={"Upload-Concat": f"final;{part}"}).headers["location"]
        response = patch(client, final, 2, b"")
        assert response.status_code == 403
        assert error_of(response) == "final_upload"


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksum_verified_chunks_are_stored(tus_server: TusServer, owner: str, algorithm: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several write batches
    with tus_server.client(owner) as client:
        url = create(client, len(data))
        first = patch(client, url, 0, data[:100], Upload_Checksum=checksum(algorithm, data[:100]))
        assert first.status_code == 204
        rest = patch(client, url, 100, data[100:], Upload_Checksum=checksum(algorithm, data[100:]))
        assert rest.status_code == 204 and rest.headers["upload-offset"] == str(len(data))
    assert tus_server.data_path(url).read_bytes() == data


def test_checksum_mismatch_is_460_and_the_chunk_is_discarded(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 10)
        assert patch(client, url, 0, b"good").status_code == 204
        response = patch(client, url, 4, b"evil", Upload_Checksum=checksum("sha1", b"nice"))
        assert response.status_code == 460
        assert error_of(response) == "checksum_mismatch"
        assert offset_of(client, url) == 4
        assert not list((tus_server.uploads / ".tmp").iterdir())
    assert tus_server.data_path(url).read_bytes() == b"good"


def test_unsupported_checksum_algorithm_is_400(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 4)
        response = patch(client, url, 0, b"data", Upload_Checksum="crc32 AAAAAA==")
        assert response.status_code == 400
        assert error_of(response) == "unsupported_checksum_algorithm"
        assert offset_of(client, url) == 0


# -- DELETE ------------------------------------------------------------------------------------


def test_termination(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 10)
        assert patch(client, url, 0, b"abc").status_code == 204
        response = client.delete(url)
        assert response.status_code == 204
        assert response.headers["tus-resumable"] == "1.0.0"
        assert client.head(url).status_code == 404
        assert patch(client, url, 3, b"x").status_code == 404
        assert client.delete(url).status_code == 404
    upload_id = url.rsplit("/", 1)[-1]
    assert not [p for p in tus_server.uploads.iterdir() if p.name.startswith(upload_id)]


# -- concatenation -----------------------------------------------------------------------------


def test_concatenation_of_three_partial_uploads(tus_server: TusServer, owner: str) -> None:
    pieces = [os.urandom(100_000), os.urandom(1), os.urandom(2_000_000)]
    with tus_server.client(owner) as client:
        parts = []
        for piece in pieces:
            part = create(client, len(piece), Upload_Concat="partial", metadata=metadata(filename="p"))
            assert patch(client, part, 0, piece, Upload_Concat="partial").status_code == 204
            assert (
                client.head(part, headers={"Upload-Concat": "partial"}).headers["upload-concat"] == "partial"
            )
            assert finished_runs(tus_server, part) == 0  # partial uploads never finish alone
            parts.append(part)
        relative = "/files/" + parts[1].rsplit("/", 1)[-1]
        response = client.post(
            "/files/",
            headers={
                "Upload-Concat": f"final;{parts[0]} {relative} {parts[2]}",
                "Upload-Metadata": metadata(filename="whole.bin"),
            },
        )
        assert response.status_code == 201, response.text
        final = response.headers["location"]
        head = client.head(final)
    assert head.headers["upload-length"] == str(sum(map(len, pieces)))
    assert head.headers["upload-offset"] == head.headers["upload-length"]
    assert head.headers["upload-concat"] == f"final;{' '.join(parts)}"
    assert head.headers["upload-metadata"] == metadata(filename="whole.bin")  # not inherited
    assert tus_server.data_path(final).read_bytes() == b"".join(pieces)
    assert finished_runs(tus_server, final) == 1


def test_concatenation_refusals(tus_server: TusServer, owner: str, other_owner: str) -> None:
    with tus_server.client(owner) as client, tus_server.client(other_owner) as other:
        done = create(client, 1, Upload_Concat="partial")
        patch(client, done, 0, b"x")
        plain = create(client, 0)
        foreign = create(other, 0, Upload_Concat="partial")
        missing = "/files/0123456789abcdef0123456789abcdef"
        for parts in (plain, foreign, missing, done):  # done twice: its bytes would multiply
            response = client.post("/files/", headers={"Upload-Concat": f"final;{done} {parts}"})
            assert response.status_code == 400, parts
            assert error_of(response) == "invalid_concat"
        with_length = client.post("/files/", headers={"Upload-Concat": f"final;{done}", "Upload-Length": "1"})
        assert with_length.status_code == 400
        with_body = client.post(
            "/files/",
            headers={"Upload-Concat": f"final;{done}", "Content-Type": OCTETS},
            content=b"x",
        )
        assert with_body.status_code == 403


def test_concatenation_unfinished_over_redis(tus_server: TusServer, owner: str, other_owner: str) -> None:
    pieces = [os.urandom(300_000), os.urandom(70_000)]
    with tus_server.client(owner) as client, tus_server.client(other_owner) as other:
        parts = [create(client, len(piece), Upload_Concat="partial") for piece in pieces]
        refused = other.post("/files/", headers={"Upload-Concat": f"final;{parts[0]}"})
        assert refused.status_code == 400 and error_of(refused) == "invalid_concat"
        response = client.post("/files/", headers={"Upload-Concat": f"final;{parts[0]} {parts[1]}"})
        assert response.status_code == 201, response.text
        final = response.headers["location"]
        head = client.head(final)
        assert "upload-offset" not in head.headers and head.headers["upload-length"] == "370000"
        assert patch(client, parts[1], 0, pieces[1]).status_code == 204
        assert finished_runs(tus_server, final) == 0
        assert patch(client, parts[0], 0, pieces[0]).status_code == 204
        assert finished_runs(tus_server, final) == 1  # assembled by the PATCH that completed it
        assert client.head(final).headers["upload-offset"] == "370000"
    assert tus_server.data_path(final).read_bytes() == b"".join(pieces)
    assert finished_runs(tus_server, final) == 1


# -- method override, proxies ------------------------------------------------------------------


def test_x_http_method_override(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        url = create(client, 3)
        response = client.post(
            url,
            content=b"abc",
            headers={"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0", "Content-Type": OCTETS},
        )
        assert response.status_code == 204 and response.headers["upload-offset"] == "3"
        head = client.get(url, headers={"X-HTTP-Method-Override": "HEAD"})
        assert head.status_code == 200 and head.headers["upload-offset"] == "3"
        other = create(client, 3)
        assert client.post(other, headers={"X-HTTP-Method-Override": "DELETE"}).status_code == 204
        assert client.head(other).status_code == 404


def test_location_ignores_forwarding_headers_unless_told(tus_server: TusServer, owner: str) -> None:
    with tus_server.client(owner) as client:
        response = client.post(
            "/files/",
            headers={"Upload-Length": "1", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
        )
    assert response.headers["location"].startswith(tus_server.base_url + "/files/")


def test_location_behind_a_trusted_proxy(tus_server_factory, owner: str) -> None:  # type: ignore[no-untyped-def]
    server = tus_server_factory(trust_proxy=True)
    with server.client(owner) as client:
        forwarded = client.post(
            "/files/",
            headers={
                "Upload-Length": "1",
                "X-Forwarded-Host": "up.example.com",
                "X-Forwarded-Proto": "https",
            },
        )
        assert forwarded.headers["location"].startswith("https://up.example.com/files/")
        rfc7239 = client.post(
            "/files/",
            headers={
                "Upload-Length": "1",
                "Forwarded": 'for=1.2.3.4;host="a.example:8443";proto=https, for=5.6.7.8',
            },
        )
        assert rfc7239.headers["location"].startswith("https://a.example:8443/files/")
        garbage = client.post("/files/", headers={"Upload-Length": "1", "X-Forwarded-Host": "a b/c"})
        assert garbage.headers["location"].startswith(server.base_url + "/files/")


# -- ownership ---------------------------------------------------------------------------------


def test_another_owner_sees_404_and_leaves_the_upload_untouched(
    tus_server: TusServer, owner: str, other_owner: str
) -> None:
    with tus_server.client(owner) as client, tus_server.client(other_owner) as intruder:
        url = create(client, 10, metadata=metadata(filename="secret"))
        assert patch(client, url, 0, b"mine").status_code == 204
        missing = intruder.head("/files/0123456789abcdef0123456789abcdef")
        probes = [intruder.head(url), patch(intruder, url, 4, b"theirs"), intruder.delete(url)]
        for probe in probes:
            assert probe.status_code == 404
            assert probe.headers.get("content-length") == missing.headers.get("content-length")
            assert "upload-offset" not in probe.headers
        assert [error_of(p) for p in probes[1:]] == ["not_found", "not_found"]
        assert offset_of(client, url) == 4
    assert tus_server.data_path(url).read_bytes() == b"mine"


# -- interrupted bodies ------------------------------------------------------------------------


def test_a_client_that_disconnects_mid_body_keeps_its_bytes(tus_server: TusServer, owner: str) -> None:
    data = os.urandom(5 * 1024 * 1024)
    half = len(data) // 2
    with tus_server.client(owner) as client:
        url = create(client, len(data))
        path = "/files/" + url.rsplit("/", 1)[-1]
        request = (
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{tus_server.port}\r\n"
            f"Tus-Resumable: 1.0.0\r\nAuthorization: Bearer {owner}\r\n"
            f"Content-Type: {OCTETS}\r\nUpload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", tus_server.port)) as sock:
            sock.sendall(request + data[:half])
            data_file = tus_server.data_path(url)
            deadline = time.monotonic() + 20
            while data_file.stat().st_size < 2 * 1024 * 1024 and time.monotonic() < deadline:
                time.sleep(0.02)  # wait until the server has written some of it
            seen = data_file.stat().st_size
        offset = offset_of(client, url)
        assert 2 * 1024 * 1024 <= seen <= offset <= half
        assert data_file.read_bytes() == data[:offset]
        assert patch(client, url, offset, data[offset:]).status_code == 204
    assert data_file.read_bytes() == data

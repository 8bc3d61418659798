"""Header parsing: the rules of tus 1.0.0 in one place."""

from __future__ import annotations

import base64
import email.utils
import hashlib
from pathlib import Path
from typing import Any

import pytest

from tusd_py.tus.filestore import FileStore
from tusd_py.tus.protocol import (
    MAX_METADATA_BYTES,
    TusError,
    http_date,
    parse_checksum,
    parse_concat,
    parse_metadata,
    parse_non_negative,
    upload_id_from_url,
)
from tusd_py.tus.store import UploadInfo, extensions_for

ID_A = "0123456789abcdef0123456789abcdef"
ID_B = "fedcba9876543210fedcba9876543210"


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def status_of(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(TusError) as raised:
        call(*args)
    return raised.value.status, raised.value.code


def test_metadata_pairs_keys_without_values_and_utf8() -> None:
    header = f"filename {b64('résumé.pdf')},is_confidential,filetype {b64('application/pdf')}"
    assert parse_metadata(header) == {
        "filename": "résumé.pdf",
        "is_confidential": "",
        "filetype": "application/pdf",
    }
    assert parse_metadata("") == {}  # tuspy sends an empty header when there is no metadata
    assert parse_metadata(f"a {b64('x')}, b {b64('y')}") == {"a": "x", "b": "y"}


@pytest.mark.parametrize(
    "header",
    [
        f"name {b64('a')},name {b64('b')}",  # repeated key
        "name not*base64",  # not base64
        f"name {b64('ab')[:-1]}",  # bad padding
        f",name {b64('a')}",  # empty key
        f"name {b64('a')} extra",  # a space inside the value
    ],
)
def test_metadata_invalid_is_400(header: str) -> None:
    assert status_of(parse_metadata, header) == (400, "invalid_metadata")


def test_metadata_larger_than_4_kib_is_400() -> None:
    header = "k " + "A" * MAX_METADATA_BYTES
    assert status_of(parse_metadata, header) == (400, "invalid_metadata")
    fits = "k " + "A" * (MAX_METADATA_BYTES - 4)
    assert parse_metadata(fits)["k"]


def test_concat_partial_and_final_with_absolute_and_relative_urls() -> None:
    assert parse_concat("partial").partial
    final = parse_concat(f"final;http://h/files/{ID_A} /files/{ID_B}")
    assert final.final and final.parts == (ID_A, ID_B)


@pytest.mark.parametrize("header", ["final;", "final", "whole", "final;/files/not-an-id", "partial;x"])
def test_concat_invalid_is_400(header: str) -> None:
    assert status_of(parse_concat, header)[0] == 400


def test_upload_id_from_url() -> None:
    assert upload_id_from_url(f"https://example.com/api/files/{ID_A}") == ID_A
    assert upload_id_from_url(f"/files/{ID_A}/") == ID_A
    assert upload_id_from_url("/files/../../etc/passwd") is None


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksum_supported_algorithms(algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"chunk").digest()
    parsed = parse_checksum(f"{algorithm} {base64.b64encode(digest).decode()}")
    assert parsed.algorithm == algorithm and parsed.digest == digest
    hasher = parsed.new_hasher()
    hasher.update(b"chunk")
    assert hasher.digest() == digest


def test_checksum_unsupported_algorithm_is_400() -> None:
    assert status_of(parse_checksum, "crc32 AAAAAA==") == (400, "unsupported_checksum_algorithm")


@pytest.mark.parametrize("header", ["sha1", "sha1 ***", "sha1 not*base64"])
def test_checksum_malformed_is_400(header: str) -> None:
    assert status_of(parse_checksum, header) == (400, "invalid_checksum")


def test_checksum_of_the_wrong_length_is_well_formed() -> None:
    # It can never match, so the chunk is answered 460 (see test_memory), not 400.
    assert parse_checksum("sha1 " + b64("short")).digest == b"short"


def test_non_negative_integers() -> None:
    assert parse_non_negative("0", "Upload-Offset") == 0
    assert parse_non_negative("104857600", "Upload-Length") == 104857600
    for bad in ["-1", "1.5", "", "1e3", "+5", "9" * 30]:
        assert status_of(parse_non_negative, bad, "Upload-Offset") == (400, "invalid_header")


def test_http_date_is_rfc9110() -> None:
    text = http_date(0)
    assert text == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert email.utils.parsedate_to_datetime(text).timestamp() == 0


class CoreOnlyStore:
    """A store with the core interface only (what a minimal backend offers)."""

    async def create(self, info: UploadInfo) -> None: ...

    async def get(self, upload_id: str) -> UploadInfo:
        raise NotImplementedError

    def data_path(self, upload_id: str) -> Path:
        raise NotImplementedError


def test_extensions_follow_the_store_capabilities(tmp_path: Path) -> None:
    assert extensions_for(CoreOnlyStore(), expiration=True) == [
        "creation",
        "creation-with-upload",
        "checksum",
    ]
    full = extensions_for(FileStore(tmp_path), expiration=True)
    assert set(full) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
        "concatenation",
        "concatenation-unfinished",
    }
    assert "expiration" not in extensions_for(FileStore(tmp_path), expiration=False)

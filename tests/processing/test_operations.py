"""The operations as pure functions: known inputs, chunk boundaries, bad input."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import pytest

from processing import transforms
from processing.operations import (
    available_operations,
    get_operation,
    result_filename,
    validate_operation,
)
from processing.tasks import filename_from_metadata


def run(fn, data: bytes, **kwargs) -> tuple[bytes, list[int]]:
    seen: list[int] = []
    out = io.BytesIO()
    fn(io.BytesIO(data), out, seen.append, **kwargs)
    return out.getvalue(), seen


def test_uppercase_letters_only():
    out, progress = run(transforms.uppercase, b"hello, world 123 \xc3\xa9t\xc3\xa9!\n")
    assert out == "HELLO, WORLD 123 ÉTÉ!\n".encode()
    assert progress[-1] == len(b"hello, world 123 \xc3\xa9t\xc3\xa9!\n")


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7])
def test_uppercase_multibyte_split_across_chunks(chunk_size):
    text = "añb€c😀d ß straße"  # 2-, 3- and 4-byte characters
    data = text.encode()
    out, progress = run(transforms.uppercase, data, chunk_size=chunk_size)
    assert out.decode() == text.upper()
    assert progress == sorted(progress)
    assert progress[-1] == len(data)


def test_uppercase_invalid_utf8_passes_through():
    data = b"ab\xff\xfe cd \xc3 e\xe2\x82"  # stray bytes and truncated sequences
    out, _ = run(transforms.uppercase, data, chunk_size=3)
    assert out == b"AB\xff\xfe CD \xc3 E\xe2\x82"


def _reference_upper(data: bytes) -> bytes:
    """The definition uppercase must match byte for byte, computed in one piece."""
    return data.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


def test_uppercase_ascii_fast_path_is_byte_exact():
    data = bytes(range(128)) * 50  # every ASCII byte, control characters included
    out, progress = run(transforms.uppercase, data, chunk_size=1000)
    assert out == data.upper() == _reference_upper(data)
    assert progress == [*range(1000, len(data), 1000), len(data)]


@pytest.mark.parametrize(
    "data",
    [
        # a 2-, 3- and 4-byte character split across the ASCII chunk that follows it
        b"abcd" + "ß".encode() + b"efghij" * 3,
        b"abc" + "€".encode() + b"defghijkl" * 3,
        b"ab" + "😀".encode() + b"cdefghijk" * 3,
        # invalid bytes: a stray continuation, a truncated sequence, then pure ASCII
        b"abc\x80defg" + b"hijklmno" * 3,
        b"abcd\xe2\x82" + b"xyzuvw" * 4,
        # ends in the middle of a character
        b"ascii ascii " + "ß".encode()[:1],
        # ß at a chunk's very end, then ASCII: grows to SS, nothing else changes
        b"xyz" + "ßß".encode() + b"tail text",
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 5, 8])
def test_uppercase_mixed_chunks_are_byte_exact(data, chunk_size):
    out, _ = run(transforms.uppercase, data, chunk_size=chunk_size)
    assert out == _reference_upper(data)


def test_uppercase_sharp_s_and_invalid_bytes_exact():
    data = "straße".encode() + b"\xff" + b" ok"
    out, _ = run(transforms.uppercase, data, chunk_size=4)
    assert out == b"STRASSE\xff OK"


def test_wordcount_known_input():
    data = b"The cat, the CAT; the dog.\nA bird\n\nend"
    out, _ = run(transforms.wordcount, data, chunk_size=4)
    report = json.loads(out)
    assert report["bytes"] == len(data)
    assert report["lines"] == 4
    assert report["words"] == 9
    assert report["top_words"][:3] == [
        {"word": "the", "count": 3},
        {"word": "cat", "count": 2},
        {"word": "a", "count": 1},
    ]
    assert report["top_words_exact"] is True


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 64 * 1024])
def test_wordcount_same_answer_whatever_the_chunking(chunk_size):
    data = ("  naïve café  naïve\tword\n" * 50).encode()
    out, _ = run(transforms.wordcount, data, chunk_size=chunk_size)
    report = json.loads(out)
    assert report["words"] == 200
    assert report["lines"] == 50
    assert report["top_words"][0] == {"word": "naïve", "count": 100}


def test_wordcount_memory_is_capped():
    data = " ".join(f"w{i}" for i in range(1000)).encode() + b" common" * 300
    out, _ = run(transforms.wordcount, data, capacity=100)
    report = json.loads(out)
    assert report["words"] == 1300
    assert report["top_words_exact"] is False
    assert report["top_words"][0]["word"] == "common"
    counter = transforms.CappedCounter(10)
    for i in range(1000):
        counter.add(str(i))
    assert len(counter.counts) <= 10


def test_wordcount_endless_token_is_bounded():
    data = b"x" * 100_000 + b" y"
    out, _ = run(transforms.wordcount, data, chunk_size=1000)
    report = json.loads(out)
    assert report["words"] == 2
    assert report["top_words"] == [{"word": "y", "count": 1}]


def test_sha256_matches_hashlib():
    data = bytes(range(256)) * 1000
    out, _ = run(transforms.sha256, data, chunk_size=1000)
    report = json.loads(out)
    assert report == {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
    }


def test_gzip_round_trip_and_deterministic():
    data = b"abc" * 100_000
    first, _ = run(transforms.gzip_compress, data)
    second, _ = run(transforms.gzip_compress, data)
    assert gzip.decompress(first) == data
    assert first == second
    assert len(first) < len(data) // 10


def test_registry_and_validation():
    public = [op.name for op in available_operations(False)]
    assert public == ["uppercase", "wordcount", "sha256", "gzip"]
    assert "fault-hang" in [op.name for op in available_operations(True)]
    assert validate_operation({}, False) == "uppercase"
    assert validate_operation({"operation": "gzip"}, False) == "gzip"
    with pytest.raises(ValueError, match=r"unknown operation 'x'; see GET /operations"):
        validate_operation({"operation": "x"}, False)
    with pytest.raises(ValueError, match="unknown operation 'fault-hang'"):
        validate_operation({"operation": "fault-hang"}, False)
    assert validate_operation({"operation": "fault-hang"}, True) == "fault-hang"
    with pytest.raises(KeyError):
        get_operation("fault-crash", enable_fault_operations=False)
    assert result_filename("notes.txt", "gzip") == "notes.txt.gz"


def test_filename_from_metadata():
    assert filename_from_metadata({"filename": "a.txt", "name": "b.txt"}) == "a.txt"
    assert filename_from_metadata({"name": "b.txt"}) == "b.txt"
    assert filename_from_metadata({"filename": "null"}) == "upload"
    assert filename_from_metadata({}) == "upload"
    assert filename_from_metadata({"filename": "../x\n\x00y"}) == "../xy"


def _reference_wordcount(data: bytes) -> dict:
    """wordcount's definition, computed in one piece and one token at a time."""
    text = data.decode("utf-8", errors="replace")
    tokens = text.split()
    keys = [transforms._rank_key(t) for t in tokens]
    counts: dict[str, int] = {}
    for key in keys:
        if key and len(key) <= transforms.MAX_RANKED_WORD_LENGTH:
            counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: transforms.TOP_WORDS]
    return {
        "bytes": len(data),
        "lines": data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0),
        "words": len(tokens),
        "top_words": [{"word": w, "count": c} for w, c in top],
        "top_words_exact": True,
    }


# Punctuation, case, multi-byte letters (split across chunks at small sizes), Unicode
# whitespace (U+3000, U+00A0, the ASCII separators \x1c-\x1f), a token that straddles
# chunks, invalid bytes, and no final newline.
_MIXED_TEXT = (
    "The cat, the CAT; «the» dog.\nÉté straße STRASSE naïve\u3000naïve\u00a0x\x1cy\x1fz\n"
    + "long" * 30
    + " (end) \xff"
).encode("utf-8", "surrogateescape") + b"\xc3 tail"


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 64, 4096, 256 * 1024])
def test_wordcount_chunking_matches_one_piece_reference(chunk_size):
    data = _MIXED_TEXT * 7
    out, progress = run(transforms.wordcount, data, chunk_size=chunk_size)
    assert json.loads(out) == _reference_wordcount(data)
    assert progress[-1] == len(data)


def test_wordcount_many_repeats_per_chunk_counts_exactly():
    # One chunk holds each word many times: counted once per distinct token, exactly.
    data = b"b a, A a! c\n" * 10_000
    out, _ = run(transforms.wordcount, data)
    report = json.loads(out)
    assert report == _reference_wordcount(data)
    assert report["top_words"] == [
        {"word": "a", "count": 30_000},
        {"word": "b", "count": 10_000},
        {"word": "c", "count": 10_000},
    ]


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, transforms.CHUNK_SIZE])
def test_sha256_any_chunking_around_the_default_chunk(chunk_size):
    data = bytes(range(256)) * (transforms.CHUNK_SIZE // 256) + b"\x00\x01\x02"  # 1 MiB + 3
    if chunk_size == 1:
        data = data[:5000]
    out, progress = run(transforms.sha256, data, chunk_size=chunk_size)
    assert json.loads(out) == {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
    }
    assert progress[-1] == len(data)


def test_gzip_output_is_the_same_bytes_whatever_the_chunking():
    data = (b"some text " * 110_000 + bytes(range(256)) * 2000)[: transforms.CHUNK_SIZE + 12_345]
    outputs = {size: run(transforms.gzip_compress, data, chunk_size=size)[0] for size in (997, 65_536)}
    default, progress = run(transforms.gzip_compress, data)
    assert progress == [transforms.CHUNK_SIZE, len(data)]
    assert gzip.decompress(default) == data
    assert outputs[997] == outputs[65_536] == default


def test_child_run_with_early_writeback_is_byte_exact(tmp_path, monkeypatch, capsys):
    from processing import child

    monkeypatch.setattr(child, "WRITEBACK_STEP", 4096)  # many writeback calls on a small file
    data = ("ascii line\n" * 3000 + "straße €\n" * 500).encode() + b"\xff"
    source, target = tmp_path / "in", tmp_path / "out"
    source.write_bytes(data)
    assert child.run("uppercase", str(source), str(target)) == 0
    assert target.read_bytes() == _reference_upper(data)
    assert capsys.readouterr().out.splitlines()[-2:] == [f"P {len(data)}", f"R {target.stat().st_size}"]


def test_child_run_renames_its_result_into_place_and_reports_its_size(tmp_path, capsys):
    from processing import child

    data = "straße €\n".encode() * 1000
    source, temporary, final = tmp_path / "in", tmp_path / "out.tmp", tmp_path / "out"
    source.write_bytes(data)
    assert child.run("uppercase", str(source), str(temporary), str(final)) == 0
    assert not temporary.exists()
    assert final.read_bytes() == _reference_upper(data)
    assert capsys.readouterr().out.splitlines()[-1] == f"R {len(_reference_upper(data))}"


def test_child_run_that_fails_places_nothing(tmp_path, capsys):
    from processing import child

    temporary, final = tmp_path / "out.tmp", tmp_path / "out"
    assert child.run("uppercase", str(tmp_path / "missing"), str(temporary), str(final)) == 1
    assert not final.exists()
    assert capsys.readouterr().out.splitlines()[-1].startswith("E I/O error")


def test_child_run_makes_a_results_directory_that_went_missing(tmp_path, capsys):
    from processing import child

    source, temporary = tmp_path / "in", tmp_path / "gone" / "out.tmp"
    source.write_bytes(b"abc")
    assert child.run("uppercase", str(source), str(temporary), str(tmp_path / "gone" / "out")) == 0
    assert (tmp_path / "gone" / "out").read_bytes() == b"ABC"
    assert capsys.readouterr().out.splitlines()[-1] == "R 3"

"""The operations themselves: pure streaming functions, constant memory at any file size.

Each reads ``source`` in chunks, writes its result to ``target`` and calls
``progress(bytes_read_so_far)`` after every chunk. None of them knows about Redis,
ARQ or processes: the child process (``processing.child``) runs exactly one of them.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import heapq
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import BinaryIO

ProgressFn = Callable[[int], None]
CHUNK_SIZE = 1024 * 1024
"""Operations read 1 MiB at a time: each chunk is then handed whole to C code
(``bytes.upper``, the digests, zlib, ``str.split``), and the Python loop around it runs
100 times for 100 MB instead of 1,600 (64 KiB chunks ran uppercase at about half the
speed). Memory stays a few chunks, whatever the file's size."""


def _chunks(source: BinaryIO, progress: ProgressFn, chunk_size: int) -> Iterator[bytes]:
    done = 0
    while chunk := source.read(chunk_size):
        done += len(chunk)
        yield chunk
        progress(done)


UPPERCASE_CHUNK_SIZE = CHUNK_SIZE


def uppercase(
    source: BinaryIO, target: BinaryIO, progress: ProgressFn, *, chunk_size: int = UPPERCASE_CHUNK_SIZE
) -> None:
    """Upper-case every letter; everything else passes through byte for byte.

    Fast path: a chunk that is pure ASCII, with no partial character left over from the
    chunk before, is upper-cased as bytes (``bytes.upper`` changes ASCII letters only,
    exactly what ``str.upper`` does to them). Any other chunk goes through an incremental
    UTF-8 decoder, which keeps a character split across two chunks whole. Invalid UTF-8
    does not fail the task: it is decoded with ``errors="surrogateescape"`` and encoded
    back the same way, so undecodable bytes come out exactly as they went in
    (``str.upper`` leaves lone surrogates alone). A letter whose upper case is longer
    (``ß`` -> ``SS``) grows the output.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    for chunk in _chunks(source, progress, chunk_size):
        if chunk.isascii() and not decoder.getstate()[0]:
            target.write(chunk.upper())
            continue
        text = decoder.decode(chunk)
        if text:
            target.write(text.upper().encode("utf-8", errors="surrogateescape"))
    tail = decoder.decode(b"", final=True)
    if tail:
        target.write(tail.upper().encode("utf-8", errors="surrogateescape"))


# wordcount keeps at most this many distinct words; see CappedCounter.
WORD_COUNTER_CAPACITY = 50_000
# Words longer than this (in characters) are counted but never ranked, which bounds
# both the carry-over between chunks and the counter's memory.
MAX_RANKED_WORD_LENGTH = 64
TOP_WORDS = 20
WORDCOUNT_CHUNK_SIZE = 256 * 1024
"""wordcount's chunk: its text becomes a list of token objects (about 60 bytes each), so
a quarter of CHUNK_SIZE keeps the child's peak memory small at the same speed."""


class CappedCounter:
    """A word counter with bounded memory.

    While it holds fewer than ``capacity`` distinct words its counts are exact. When it
    overflows it drops the less frequent half and marks itself inexact; words that keep
    coming back re-enter, so the frequent words of a large vocabulary still surface
    (their counts may then be lower than the truth). ``exact`` tells which case applies.
    """

    def __init__(self, capacity: int = WORD_COUNTER_CAPACITY) -> None:
        self.capacity = capacity
        self.counts: dict[str, int] = {}
        self.exact = True

    def add(self, word: str, times: int = 1) -> None:
        self.counts[word] = self.counts.get(word, 0) + times
        if len(self.counts) > self.capacity:
            keep = heapq.nlargest(self.capacity // 2, self.counts.items(), key=lambda kv: kv[1])
            self.counts = dict(keep)
            self.exact = False

    def top(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` most frequent words, ties broken alphabetically."""
        return heapq.nsmallest(n, self.counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _rank_key(token: str) -> str:
    """The form a token is ranked under: surrounding punctuation stripped, case-folded."""
    start, end = 0, len(token)
    while start < end and not token[start].isalnum():
        start += 1
    while end > start and not token[end - 1].isalnum():
        end -= 1
    return token[start:end].casefold()


def wordcount(
    source: BinaryIO,
    target: BinaryIO,
    progress: ProgressFn,
    *,
    chunk_size: int = WORDCOUNT_CHUNK_SIZE,
    capacity: int = WORD_COUNTER_CAPACITY,
) -> None:
    """Count bytes, lines and words, and rank the 20 most frequent words (JSON).

    - ``bytes``: size of the input.
    - ``lines``: newline characters, plus one if the input does not end with one
      (so "a\\nb" has 2 lines, "" has 0).
    - ``words``: runs of non-whitespace (Unicode whitespace), as ``wc -w`` counts them.
    - ``top_words``: ``[{"word", "count"}]``, most frequent first; a word is a token with
      its leading and trailing punctuation removed, case-folded; tokens with no letter
      or digit, and tokens longer than 64 characters, are not ranked.
    - ``top_words_exact``: false when more than 50,000 distinct words made the counter
      drop rare ones (see :class:`CappedCounter`); memory stays bounded either way.

    Invalid UTF-8 is decoded with U+FFFD replacements: it can only affect ranking.

    Speed: a chunk's text is split by ``str.split`` and its tokens counted by
    ``collections.Counter`` (both C); Python-level work (punctuation stripping,
    case-folding, the capped counter) runs once per *distinct* token of a chunk, not per
    token. While the counter is exact this gives the same counts as counting one token
    at a time; once it overflowed, counts are approximate either way.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    counter = CappedCounter(capacity)
    total = lines = words = 0
    last_byte = b""
    # A token may straddle chunks: its text so far is carried over, up to a bound.
    in_token = False
    carry = ""
    carry_too_long = False

    def extend(part: str) -> None:
        nonlocal carry, carry_too_long
        if not carry_too_long:
            carry += part
            if len(carry) > MAX_RANKED_WORD_LENGTH * 4:
                carry, carry_too_long = "", True

    def finish() -> None:
        nonlocal words, in_token, carry, carry_too_long
        words += 1
        if not carry_too_long:
            take(carry, 1)
        in_token, carry, carry_too_long = False, "", False

    def take(token: str, times: int) -> None:
        key = _rank_key(token)
        if key and len(key) <= MAX_RANKED_WORD_LENGTH:
            counter.add(key, times)

    def feed(text: str) -> None:
        nonlocal words, in_token
        if not text:
            return
        tokens = text.split()
        ends_inside = not text[-1].isspace()
        if in_token:
            if not text[0].isspace():
                extend(tokens.pop(0))
                if not tokens and ends_inside:
                    return  # the whole text continued the carried token
            finish()
        if ends_inside and tokens:
            in_token = True
            extend(tokens.pop())
        words += len(tokens)
        for token, times in Counter(tokens).items():
            take(token, times)

    for chunk in _chunks(source, progress, chunk_size):
        total += len(chunk)
        lines += chunk.count(b"\n")
        last_byte = chunk[-1:]
        feed(decoder.decode(chunk))
    feed(decoder.decode(b"", final=True))
    if in_token:
        finish()
    if total and last_byte != b"\n":
        lines += 1
    report = {
        "bytes": total,
        "lines": lines,
        "words": words,
        "top_words": [{"word": w, "count": c} for w, c in counter.top(TOP_WORDS)],
        "top_words_exact": counter.exact,
    }
    target.write(json.dumps(report, ensure_ascii=False, indent=2).encode() + b"\n")


def sha256(source: BinaryIO, target: BinaryIO, progress: ProgressFn, *, chunk_size: int = CHUNK_SIZE) -> None:
    """Digests of the input as JSON: ``{"bytes", "sha256", "sha1", "md5"}`` (hex)."""
    digests = {
        "sha256": hashlib.sha256(),
        "sha1": hashlib.sha1(usedforsecurity=False),
        "md5": hashlib.md5(usedforsecurity=False),
    }
    total = 0
    for chunk in _chunks(source, progress, chunk_size):
        total += len(chunk)
        for digest in digests.values():
            digest.update(chunk)
    report = {"bytes": total, **{name: d.hexdigest() for name, d in digests.items()}}
    target.write(json.dumps(report, indent=2).encode() + b"\n")


def gzip_compress(
    source: BinaryIO, target: BinaryIO, progress: ProgressFn, *, chunk_size: int = CHUNK_SIZE
) -> None:
    """gzip-compress the input (level 6, no name, mtime 0: a rerun yields the same bytes)."""
    with gzip.GzipFile(filename="", mode="wb", fileobj=target, compresslevel=6, mtime=0) as out:
        for chunk in _chunks(source, progress, chunk_size):
            out.write(chunk)

"""2. 32 clients upload 10 MB each at once: throughput, PATCH latency, errors, API memory.

Two request sizes, each against the sinks doing the same requests: 8 MiB PATCHes are
what our own clients send by default (the CLI's ``--chunk-size`` and the web console's
Uppy ``chunkSize``; tus-js-client, Uppy and tuspy send a whole file in one PATCH by
default), and 1 MiB PATCHes (ten requests per file), the mode of the first recorded
runs, stress the work per request.
Baselines in the same run, interleaved round by round (medians of ROUNDS): the bare
uvicorn PUT sink and the raw-socket sink (:mod:`bench.raw_sink`), each taking the same
requests from the same 32 clients, and the tus peers (tuspyserver, @tus/server,
:mod:`bench.ingest_peers`) taking the same creation POSTs and PATCHes. Every contender
runs one unmeasured round first (its first allocations), and after each round its files
are removed (:func:`bench.harness.drop_files`), so all write into recycled page cache.
The CPU time every server process spent per MiB received is reported beside the rates:
what the work per request costs, whatever the number of processes doing it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar
from urllib.parse import urlsplit

import psutil

from bench.harness import BenchEnv, MiB, PeakRSS, drop_files, median, metadata_header, percentile
from bench.ingest_peers import Peer, ingest_peers
from bench.loadgen import Connection, with_connection
from bench.loadgen import run as run_loop
from bench.report import Row

CLIENTS = 32
WHOLE_FILE = 0
PATCH_SIZES = (WHOLE_FILE, 8 * MiB, MiB)
"""tus-js-client's, Uppy's and tuspy's default, our CLI's and console's, then the
many-requests stress case."""
TARGETED = {WHOLE_FILE, 8 * MiB}
"""The sizes clients send carry the >= 1.0 target. With 1 MiB PATCHes the sink's whole
CPU per MiB (~0.8 ms) is less than one authenticated, locked request costs here
(see bench/RESULTS.md): that mode is measured and reported, against the peers too."""
_OFFSET_TYPE = b"Content-Type: application/offset+octet-stream\r\n"
_TUS = b"Tus-Resumable: 1.0.0\r\n"
RSS_TARGET_MB = 100
ROUNDS = 5
T = TypeVar("T")


def _header_lines(headers: dict[str, str]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in headers.items())


async def _tus_client(
    creation_url: str, auth: bytes, size: int, block: memoryview, latencies: list[float]
) -> str:
    patch_size = len(block)
    creation_path = urlsplit(creation_url).path.encode()

    async def upload(connection: Connection) -> str:
        status, fields = await connection.request(
            b"POST",
            creation_path,
            auth
            + _header_lines(
                {"Upload-Length": str(size), "Upload-Metadata": metadata_header({"operation": "sha256"})}
            ),
        )
        if status != 201:
            raise RuntimeError(f"POST answered {status}")
        path = urlsplit(fields[b"location"].decode()).path.encode()
        offset = 0
        while offset < size:
            body = block[: min(patch_size, size - offset)]
            started = time.perf_counter()
            status, _ = await connection.request(
                b"PATCH", path, auth + b"Upload-Offset: %d\r\n%s" % (offset, _OFFSET_TYPE), body
            )
            latencies.append(time.perf_counter() - started)
            if status != 204:
                raise RuntimeError(f"PATCH answered {status}")
            offset += len(body)
        return path.decode().rsplit("/", 1)[-1]

    return await with_connection(creation_url, upload)


async def _sink_client(url: str, size: int, block: memoryview) -> None:
    async def upload(connection: Connection) -> None:
        path = urlsplit(url).path.encode() or b"/"
        offset = 0
        while offset < size:
            body = block[: min(len(block), size - offset)]
            status, _ = await connection.request(b"PUT", path, b"", body)
            if status >= 300:
                raise RuntimeError(f"PUT answered {status}")
            offset += len(body)

    await with_connection(url, upload)


async def _tus_round(
    env: BenchEnv, size: int, block: memoryview
) -> tuple[float, list[float], int, list[str]]:
    latencies: list[float] = []
    auth = _header_lines(env.headers)
    started = time.perf_counter()
    outcomes = await asyncio.gather(
        *(_tus_client(env.base_url + "/files/", auth, size, block, latencies) for _ in range(CLIENTS)),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - started
    task_ids = [outcome for outcome in outcomes if isinstance(outcome, str)]
    async with env.async_client() as client:
        for task_id in task_ids:
            await client.delete(f"/tasks/{task_id}")
    errors = sum(1 for outcome in outcomes if isinstance(outcome, BaseException))
    return CLIENTS * size / MiB / elapsed, latencies, errors, task_ids


async def _sink_round(url: str, size: int, block: memoryview) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(_sink_client(url, size, block) for _ in range(CLIENTS)))
    return CLIENTS * size / MiB / (time.perf_counter() - started)


async def _peer_round(peer: Peer, size: int, block: memoryview) -> float:
    """A tus peer takes what tusd-py takes (no auth); a sink takes PUTs."""
    if not peer.tus:
        return await _sink_round(peer.url, size, block)
    started = time.perf_counter()
    await asyncio.gather(*(_tus_client(peer.url, _TUS, size, block, []) for _ in range(CLIENTS)))
    return CLIENTS * size / MiB / (time.perf_counter() - started)


class CpuClock:
    """CPU seconds (user + system, every thread) that ``pick``'s processes spent."""

    def __init__(self, pick: Callable[[], list[psutil.Process]]) -> None:
        self._pick = pick

    def read(self) -> float:
        total = 0.0
        for process in self._pick():
            with suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def measure(self, round_: Callable[[], T], received_mib: float, into: list[float]) -> T:
        """Run ``round_``; append its CPU milliseconds per MiB received to ``into``."""
        before = self.read()
        outcome = round_()
        into.append((self.read() - before) * 1000 / received_mib)
        return outcome


def run(env: BenchEnv, scale: float) -> list[Row]:
    size = max(MiB, int(10 * MiB * scale))
    env.set_workers(0)
    api = env.api_processes()
    rss_before = sum(process.memory_info().rss for process in api)
    rows: list[Row] = []
    errors = 0
    with (
        ingest_peers(env.workdir / "concurrent-peers") as (peers, missing),
        PeakRSS(lambda: api, together=True) as peak,
    ):
        for patch_size in PATCH_SIZES:
            shape = "one PATCH each" if patch_size == WHOLE_FILE else f"{patch_size // MiB} MiB PATCHes"
            name = f"{CLIENTS} x {size // MiB} MB, {shape}"
            mode_rows, mode_errors = _mode(env, peers, size, patch_size or size, name, patch_size in TARGETED)
            rows += mode_rows
            errors += mode_errors
        rows += [Row("2 concurrent", "peer left out", 0, "", note=reason) for reason in missing]
    env.set_workers(1)
    growth = (peak.peak - rss_before) / MiB
    return [
        *rows,
        Row("2 concurrent", "errors", errors, "", target="0", met=errors == 0),
        Row(
            "2 concurrent", "API RSS growth", growth, "MB", rss_before / MiB,
            f"RSS before, {env.api_shape()}",
            f"< {RSS_TARGET_MB} MB", growth < RSS_TARGET_MB,
        ),
    ]  # fmt: skip


def _mode(
    env: BenchEnv, peers: list[Peer], size: int, patch_size: int, name: str, targeted: bool
) -> tuple[list[Row], int]:
    """A warm-up, then ROUNDS interleaved rounds of every contender with one request size;
    each round starts with another contender, so none always follows the same one."""
    block = memoryview(b"x" * patch_size)
    received = CLIENTS * size / MiB
    api = CpuClock(env.api_processes)
    sink = CpuClock(lambda: [psutil.Process(env.sink.pid)])
    sinks: list[float] = []
    peer_rates: dict[str, list[float]] = {peer.name: [] for peer in peers}
    rates: list[float] = []
    api_cpu: list[float] = []
    sink_cpu: list[float] = []
    latencies: list[float] = []
    errors = 0

    def sink_round(measured: bool) -> None:
        rate = sink.measure(lambda: run_loop(lambda: _sink_round(env.sink_url, size, block)), received,
                            sink_cpu if measured else [])  # fmt: skip
        drop_files(env.sink_dir)
        if measured:
            sinks.append(rate)

    def peer_round(peer: Peer, measured: bool) -> None:
        rate = run_loop(lambda: _peer_round(peer, size, block))
        drop_files(peer.files)
        if measured:
            peer_rates[peer.name].append(rate)

    def tus_round(measured: bool) -> None:
        nonlocal errors
        rate, round_latencies, round_errors, _ = api.measure(
            lambda: run_loop(lambda: _tus_round(env, size, block)), received, api_cpu if measured else []
        )
        drop_files(env.service.data_dir / "uploads")
        errors += round_errors
        if measured:
            rates.append(rate)
            latencies.extend(round_latencies)

    contenders: list[Callable[[bool], None]] = [
        sink_round,
        *(functools.partial(peer_round, peer) for peer in peers),
        tus_round,
    ]
    for contender in contenders:  # warm-up: first allocations, first connections
        contender(False)
    for turn in range(ROUNDS):  # interleaved, and each round starts with the next one
        first = turn % len(contenders)  # more rounds than contenders without the peers
        for contender in contenders[first:] + contenders[:first]:
            contender(True)
    rate, baseline = median(rates), median(sinks)
    rounds = (
        "rounds: " + ", ".join(f"{r:.0f}" for r in rates) + " against " + ", ".join(f"{b:.0f}" for b in sinks)
    )
    return [
        Row("2 concurrent", f"{name}, aggregate", rate, "MB/s", baseline, "bare uvicorn PUT sink",
            ">= 1.0" if targeted else "", rate >= baseline if targeted else None, rounds),
        *(Row("2 concurrent", f"{name}, vs {peer}", rate, "MB/s", median(values), peer)
          for peer, values in peer_rates.items()),
        Row("2 concurrent", f"{name}, server CPU per MiB", median(api_cpu), "ms", median(sink_cpu),
            "bare uvicorn PUT sink (1 process)", note=f"tusd-py: {env.api_shape()}"),
        Row("2 concurrent", f"{name}, PATCH p50", percentile(latencies, 50) * 1000, "ms"),
        Row("2 concurrent", f"{name}, PATCH p99", percentile(latencies, 99) * 1000, "ms"),
    ], errors  # fmt: skip

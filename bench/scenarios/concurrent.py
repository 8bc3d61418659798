"""2. 32 clients upload 10 MB each at once: throughput, PATCH latency, errors, API memory.

Two request sizes, each against the sinks doing the same requests: 8 MiB PATCHes are
what our own clients send by default (the CLI's ``--chunk-size`` and the web console's
Uppy ``chunkSize``; tus-js-client, Uppy and tuspy send a whole file in one PATCH by
default), and 1 MiB PATCHes (ten requests per file), the mode of the first recorded
runs, stress the work per request.
Baselines in the same run, interleaved round by round (medians of ROUNDS): the bare
uvicorn PUT sink and the raw-socket sink (:mod:`bench.raw_sink`), each taking the same
requests from the same 32 clients. After each round its contender's files are removed
(:func:`bench.harness.drop_files`), so all write into recycled page cache.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.harness import BenchEnv, MiB, PeakRSS, drop_files, median, metadata_header, percentile
from bench.ingest_peers import raw_sink
from bench.loadgen import Connection, with_connection
from bench.loadgen import run as run_loop
from bench.report import Row

CLIENTS = 32
PATCH_SIZES = (8 * MiB, MiB)
"""Our clients' default, then the many-requests stress case."""
_OFFSET_TYPE = b"Content-Type: application/offset+octet-stream\r\n"
RSS_TARGET_MB = 100
ROUNDS = 3


def _header_lines(headers: dict[str, str]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in headers.items())


async def _tus_client(
    base_url: str, auth: bytes, size: int, block: memoryview, latencies: list[float]
) -> str:
    patch_size = len(block)

    async def upload(connection: Connection) -> str:
        status, fields = await connection.request(
            b"POST",
            b"/files/",
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

    return await with_connection(base_url, upload)


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
        *(_tus_client(env.base_url, auth, size, block, latencies) for _ in range(CLIENTS)),
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


def run(env: BenchEnv, scale: float) -> list[Row]:
    size = max(MiB, int(10 * MiB * scale))
    env.set_workers(0)
    api = env.api_process()
    rss_before = api.memory_info().rss
    rows: list[Row] = []
    errors = 0
    raw_dir = env.workdir / "concurrent-raw"
    with raw_sink(raw_dir) as raw_url, PeakRSS(lambda: [api]) as peak:
        for patch_size in PATCH_SIZES:
            name = f"{CLIENTS} x {size // MiB} MB, {patch_size // MiB} MiB PATCHes"
            mode_rows, mode_errors = _mode(env, raw_url, raw_dir, size, patch_size, name)
            rows += mode_rows
            errors += mode_errors
    env.set_workers(1)
    growth = (peak.peak - rss_before) / MiB
    return [
        *rows,
        Row("2 concurrent", "errors", errors, "", target="0", met=errors == 0),
        Row(
            "2 concurrent", "API RSS growth", growth, "MB", rss_before / MiB, "RSS before",
            f"< {RSS_TARGET_MB} MB", growth < RSS_TARGET_MB,
        ),
    ]  # fmt: skip


def _mode(
    env: BenchEnv, raw_url: str, raw_dir: Path, size: int, patch_size: int, name: str
) -> tuple[list[Row], int]:
    """ROUNDS interleaved rounds of the two sinks and tusd-py with one request size."""
    block = memoryview(b"x" * patch_size)
    sinks: list[float] = []
    raws: list[float] = []
    rates: list[float] = []
    latencies: list[float] = []
    errors = 0
    for _ in range(ROUNDS):  # interleaved, so drift hits all alike
        sinks.append(run_loop(lambda: _sink_round(env.sink_url, size, block)))
        drop_files(env.sink_dir)
        raws.append(run_loop(lambda: _sink_round(raw_url, size, block)))
        drop_files(raw_dir / "raw")
        rate, round_latencies, round_errors, _ = run_loop(lambda: _tus_round(env, size, block))
        drop_files(env.service.data_dir / "uploads")
        rates.append(rate)
        latencies += round_latencies
        errors += round_errors
    rate, baseline = median(rates), median(sinks)
    rounds = (
        "rounds: " + ", ".join(f"{r:.0f}" for r in rates) + " against " + ", ".join(f"{b:.0f}" for b in sinks)
    )
    return [
        Row("2 concurrent", f"{name}, aggregate", rate, "MB/s", baseline, "bare uvicorn PUT sink",
            ">= 1.0", rate >= baseline, rounds),
        Row("2 concurrent", f"{name}, vs raw socket", rate, "MB/s", median(raws), "raw-socket PUT sink"),
        Row("2 concurrent", f"{name}, PATCH p50", percentile(latencies, 50) * 1000, "ms"),
        Row("2 concurrent", f"{name}, PATCH p99", percentile(latencies, 99) * 1000, "ms"),
    ], errors  # fmt: skip

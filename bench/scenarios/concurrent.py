"""2. 32 clients upload 10 MB each at once: throughput, PATCH latency, errors, API memory.

Baselines in the same run, interleaved round by round (medians of ROUNDS): the bare
uvicorn PUT sink and the raw-socket sink (:mod:`bench.raw_sink`), each taking the same
1 MiB requests from the same 32 clients.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.harness import BenchEnv, MiB, PeakRSS, median, metadata_header, percentile
from bench.ingest_peers import raw_sink
from bench.report import Row

CLIENTS = 32
PATCH_SIZE = MiB
RSS_TARGET_MB = 100
ROUNDS = 3


async def _tus_client(client: httpx.AsyncClient, size: int, block: bytes, latencies: list[float]) -> str:
    created = await client.post(
        "/files/",
        headers={"Upload-Length": str(size), "Upload-Metadata": metadata_header({"operation": "sha256"})},
    )
    created.raise_for_status()
    location = created.headers["location"]
    offset = 0
    while offset < size:
        body = block[: min(PATCH_SIZE, size - offset)]
        started = time.perf_counter()
        response = await client.patch(
            location,
            content=body,
            headers={"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
        )
        latencies.append(time.perf_counter() - started)
        if response.status_code != 204:
            raise RuntimeError(f"PATCH answered {response.status_code}")
        offset += len(body)
    return location.rsplit("/", 1)[-1]


async def _sink_client(client: httpx.AsyncClient, url: str, size: int, block: bytes) -> None:
    offset = 0
    while offset < size:
        body = block[: min(PATCH_SIZE, size - offset)]
        (await client.put(url, content=body)).raise_for_status()
        offset += len(body)


async def _tus_round(env: BenchEnv, size: int, block: bytes) -> tuple[float, list[float], int, list[str]]:
    latencies: list[float] = []
    async with env.async_client() as client:
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(_tus_client(client, size, block, latencies) for _ in range(CLIENTS)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
        task_ids = [outcome for outcome in outcomes if isinstance(outcome, str)]
        for task_id in task_ids:
            await client.delete(f"/tasks/{task_id}")
    errors = sum(1 for outcome in outcomes if isinstance(outcome, BaseException))
    return CLIENTS * size / MiB / elapsed, latencies, errors, task_ids


async def _sink_round(url: str, size: int, block: bytes) -> float:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(_sink_client(client, url, size, block) for _ in range(CLIENTS)))
        return CLIENTS * size / MiB / (time.perf_counter() - started)


def run(env: BenchEnv, scale: float) -> list[Row]:
    size = max(PATCH_SIZE, int(10 * MiB * scale))
    block = b"x" * PATCH_SIZE
    env.set_workers(0)
    api = env.api_process()
    rss_before = api.memory_info().rss
    sinks: list[float] = []
    raws: list[float] = []
    rates: list[float] = []
    latencies: list[float] = []
    errors = 0
    with raw_sink(env.workdir / "concurrent-raw") as raw_url, PeakRSS(lambda: [api]) as peak:
        for _ in range(ROUNDS):  # interleaved, so drift hits all alike
            sinks.append(asyncio.run(_sink_round(env.sink_url, size, block)))
            raws.append(asyncio.run(_sink_round(raw_url, size, block)))
            rate, round_latencies, round_errors, _ = asyncio.run(_tus_round(env, size, block))
            rates.append(rate)
            latencies += round_latencies
            errors += round_errors
    env.set_workers(1)
    rate, baseline = median(rates), median(sinks)
    growth = (peak.peak - rss_before) / MiB
    name = f"{CLIENTS} x {size // MiB} MB"
    return [
        Row("2 concurrent", f"{name}, aggregate", rate, "MB/s", baseline, "bare uvicorn PUT sink",
            ">= 1.0", rate >= baseline),
        Row("2 concurrent", f"{name}, vs raw socket", rate, "MB/s", median(raws), "raw-socket PUT sink"),
        Row("2 concurrent", "PATCH p50", percentile(latencies, 50) * 1000, "ms"),
        Row("2 concurrent", "PATCH p99", percentile(latencies, 99) * 1000, "ms"),
        Row("2 concurrent", "errors", errors, "", target="0", met=errors == 0),
        Row(
            "2 concurrent", "API RSS growth", growth, "MB", rss_before / MiB, "RSS before",
            f"< {RSS_TARGET_MB} MB", growth < RSS_TARGET_MB,
        ),
    ]  # fmt: skip

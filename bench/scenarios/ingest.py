"""1. One upload of 100 MB: a single PATCH, and 8 MiB PATCHes, against the bare sink.

Each mode has its own floor with the same requests: one 100 MB PUT for the single
PATCH, 8 MiB PUTs for the chunked upload. So the ratio is the cost of the tus
protocol work (auth, lock, offsets, expiry) and not of HTTP requests as such.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from bench.harness import BenchEnv, MiB, file_chunks, median, text_file
from bench.report import Row

REPEATS = 5
TARGET = 0.9


def sink_rate(env: BenchEnv, path: Path, chunk_size: int) -> float:
    size = path.stat().st_size
    with httpx.Client(timeout=300) as client:
        started = time.perf_counter()
        for offset in range(0, size, chunk_size):
            length = min(chunk_size, size - offset)
            response = client.put(
                env.sink_url,
                content=file_chunks(path, offset, length),
                headers={"Content-Length": str(length)},
            )
            response.raise_for_status()
        elapsed = time.perf_counter() - started
    return size / MiB / elapsed


def tus_rate(env: BenchEnv, path: Path, chunk_size: int) -> float:
    size = path.stat().st_size
    with env.client() as client:
        started = time.perf_counter()
        task_id, _ = env.upload_file(client, path, chunk_size)
        elapsed = time.perf_counter() - started
        client.delete(f"/tasks/{task_id}")  # ingest only: no processing competes for the CPU
    return size / MiB / elapsed


def run(env: BenchEnv, scale: float) -> list[Row]:
    size = max(MiB, int(100 * MiB * scale))
    path = text_file(env.data_dir, size)
    env.set_workers(0)
    rows = []
    for mode, chunk_size in ((f"{size // MiB} MB, one PATCH", size), ("8 MiB PATCHes", 8 * MiB)):
        floor, tus = [], []
        for _ in range(REPEATS):  # interleaved, so drift hits both alike
            floor.append(sink_rate(env, path, chunk_size))
            tus.append(tus_rate(env, path, chunk_size))
        rate, baseline = median(tus), median(floor)
        sink_name = "bare sink, one PUT" if chunk_size >= size else "bare sink, 8 MiB PUTs"
        met = rate / baseline >= TARGET
        rows.append(Row("1 ingest", mode, rate, "MB/s", baseline, sink_name, f">= {TARGET}", met))
    env.set_workers(1)
    return rows

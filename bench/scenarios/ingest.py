"""1. One upload of 100 MB: a single PATCH, and 8 MiB PATCHes, against the bare sink; and
the single PATCH against the peers (a raw-socket sink, tuspyserver, @tus/server).

Each mode has its own floor with the same requests: one 100 MB PUT for the single
PATCH, 8 MiB PUTs for the chunked upload. So the ratio is the cost of the tus
protocol work (auth, lock, offsets, expiry) and not of HTTP requests as such. The
peers (:mod:`bench.ingest_peers`) are measured in the same rounds, interleaved, and
each tus peer does what tusd-py does: a creation POST, then one PATCH of the bytes.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from bench.harness import BenchEnv, MiB, file_chunks, median, text_file
from bench.ingest_peers import Peer, ingest_peers
from bench.report import Row

REPEATS = 5
TARGET = 0.9


def sink_rate(url: str, path: Path, chunk_size: int) -> float:
    size = path.stat().st_size
    with httpx.Client(timeout=300) as client:
        started = time.perf_counter()
        for offset in range(0, size, chunk_size):
            length = min(chunk_size, size - offset)
            response = client.put(
                url,
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


def peer_tus_rate(url: str, path: Path) -> float:
    """A tus peer: creation POST, then the whole file in one PATCH (no auth)."""
    size = path.stat().st_size
    with httpx.Client(timeout=300, headers={"Tus-Resumable": "1.0.0"}) as client:
        started = time.perf_counter()
        created = client.post(url, headers={"Upload-Length": str(size)})
        if created.status_code != 201:
            raise RuntimeError(f"{url}: POST answered {created.status_code}: {created.text[:200]}")
        location = str(httpx.URL(url).join(created.headers["location"]))
        response = client.patch(
            location,
            content=file_chunks(path),
            headers={
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(size),
            },
        )
        if response.status_code != 204 or int(response.headers["upload-offset"]) != size:
            raise RuntimeError(f"{url}: PATCH answered {response.status_code}: {response.text[:200]}")
        elapsed = time.perf_counter() - started
    return size / MiB / elapsed


def _peer_rate(peer: Peer, path: Path) -> float:
    return peer_tus_rate(peer.url, path) if peer.tus else sink_rate(peer.url, path, path.stat().st_size)


def run(env: BenchEnv, scale: float) -> list[Row]:
    size = max(MiB, int(100 * MiB * scale))
    path = text_file(env.data_dir, size)
    env.set_workers(0)
    rows = []
    with ingest_peers(env.workdir / "ingest-peers") as (peers, missing):
        for mode, chunk_size in ((f"{size // MiB} MB, one PATCH", size), ("8 MiB PATCHes", 8 * MiB)):
            single = chunk_size >= size
            floor: list[float] = []
            tus: list[float] = []
            others: dict[str, list[float]] = {peer.name: [] for peer in peers} if single else {}
            for _ in range(REPEATS):  # interleaved, so drift hits all alike
                floor.append(sink_rate(env.sink_url, path, chunk_size))
                tus.append(tus_rate(env, path, chunk_size))
                for peer in peers if single else ():
                    others[peer.name].append(_peer_rate(peer, path))
            rate, baseline = median(tus), median(floor)
            sink_name = "bare sink, one PUT" if single else "bare sink, 8 MiB PUTs"
            met = rate / baseline >= TARGET
            rows.append(Row("1 ingest", mode, rate, "MB/s", baseline, sink_name, f">= {TARGET}", met))
            for name, rates in others.items():
                what = "one PUT" if name == "raw socket sink" else "POST + one PATCH"
                rows.append(Row("1 ingest", f"{mode}, tusd-py vs {name}", rate, "MB/s", median(rates),
                                f"{name}, {what}"))  # fmt: skip
        for reason in missing:
            rows.append(Row("1 ingest", "peer left out", 0, "", note=reason))
    env.set_workers(1)
    return rows

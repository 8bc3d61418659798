"""3. ``uppercase`` of 100 MB through the worker, against the same transformation in-process."""

from __future__ import annotations

import time
from pathlib import Path

from bench.harness import BenchEnv, MiB, median, parse_time, text_file
from bench.report import Row
from processing.operations import get_operation

TARGET = 0.7
REPEATS = 5


def in_process_seconds(source: Path, target: Path) -> float:
    """The floor: the same streaming function, same chunk size, no queue, no child process."""
    transform = get_operation("uppercase").function
    with source.open("rb") as reader, target.open("wb") as writer:
        started = time.perf_counter()
        transform(reader, writer, lambda done: None)
        writer.flush()
        return time.perf_counter() - started


def worker_seconds(env: BenchEnv, source: Path) -> float:
    """Enqueue (the task's creation by the finish hook) to completed, by the server's clocks."""
    with env.client() as client:
        task_id, _ = env.upload_file(client, source, 8 * MiB, operation="uppercase")
        task = env.wait_task(client, task_id)
    return parse_time(str(task["finished_at"])) - parse_time(str(task["created_at"]))


def run(env: BenchEnv, scale: float) -> list[Row]:
    size = max(MiB, int(100 * MiB * scale))
    source = text_file(env.data_dir, size)
    floor, worker = [], []
    for _ in range(REPEATS):  # interleaved, so drift hits both alike
        floor.append(size / MiB / in_process_seconds(source, env.workdir / "inprocess.out"))
        worker.append(size / MiB / worker_seconds(env, source))
    rate, baseline = median(worker), median(floor)
    return [
        Row(
            "3 processing", f"uppercase {size // MiB} MB, enqueue to completed", rate, "MB/s",
            baseline, "same function in-process", f">= {TARGET}", rate / baseline >= TARGET,
        )
    ]  # fmt: skip

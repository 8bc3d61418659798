"""6. Peak RSS of the child process while it upper-cases 100 MB (against 1 KB)."""

from __future__ import annotations

from pathlib import Path

from bench.harness import BenchEnv, MiB, PeakRSS, text_file
from bench.report import Row

TARGET_MB = 64


def child_peak_rss(env: BenchEnv, source: Path) -> float:
    with PeakRSS(env.worker_children, interval=0.002) as peak, env.client() as client:
        task_id, _ = env.upload_file(client, source, 8 * MiB)
        env.wait_task(client, task_id)
    return peak.peak / MiB


def run(env: BenchEnv, scale: float) -> list[Row]:
    size = max(MiB, int(100 * MiB * scale))
    small = child_peak_rss(env, text_file(env.data_dir, 1024))
    large = child_peak_rss(env, text_file(env.data_dir, size))
    return [
        Row(
            "6 job memory", f"child peak RSS, {size // MiB} MB file", large, "MB",
            small, "same child, 1 KB file", f"< {TARGET_MB} MB", large < TARGET_MB,
        )
    ]  # fmt: skip

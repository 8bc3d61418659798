"""`make bench` keeps working: two scenarios at a tiny size, end to end (no timings asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_bench_runs_scenarios_against_their_baselines() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "ingest", "memory", "--scale", "0.02", "--no-write"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    assert "bare sink, one PUT" in result.stdout and "8 MiB PATCHes" in result.stdout
    assert "child peak RSS" in result.stdout

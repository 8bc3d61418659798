"""`make bench` keeps working: three scenarios at a tiny size, end to end (no timings asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_bench_runs_scenarios_against_their_baselines() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "ingest", "concurrent", "memory", "--scale", "0.02", "--no-write"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TUSD_PY_BENCH_INGEST_PEERS": "raw"},  # no venv or npm install here
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    assert "bare sink, one PUT" in result.stdout and "8 MiB PATCHes" in result.stdout
    assert "tusd-py vs raw socket sink" in result.stdout
    assert "ingest peer left out: tuspyserver, @tus/server: TUSD_PY_BENCH_INGEST_PEERS=raw" in result.stderr
    assert "child peak RSS" in result.stdout
    assert "one PATCH each, server CPU per MiB" in result.stdout  # concurrent, all API processes
    assert "API processes + parent" in result.stdout or "1 API process" in result.stdout

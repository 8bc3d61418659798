"""One module per scenario, each with ``run(env, scale) -> list[Row]``."""

from __future__ import annotations

from collections.abc import Callable

from bench.harness import BenchEnv
from bench.report import Row
from bench.scenarios import concurrent, ingest, job_memory, processing_speed, queue_latency, throughput

Scenario = Callable[[BenchEnv, float], list[Row]]


def _peers(env: BenchEnv, scale: float) -> list[Row]:
    """5b: small tasks against Celery, RQ and bare ARQ (imported here: bench.peers imports us)."""
    from bench.peers import run

    return run(env, scale)


SCENARIOS: dict[str, Scenario] = {
    "ingest": ingest.run,
    "concurrent": concurrent.run,
    "processing": processing_speed.run,
    "latency": queue_latency.run,
    "throughput": throughput.run,
    "memory": job_memory.run,
    "peers": _peers,
}

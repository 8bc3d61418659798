"""5b. Small tasks against the peers, in one run: Celery prefork and RQ doing the same
1 KB upper-case job (fsync, rename), and the bare ARQ floor (no-op jobs), each drained
with two processes' worth of concurrency from a queue filled before the workers start.

tusd-py: one worker, ``max_jobs=2`` (upload, task record, events, warm child).
Celery 5.7: ``-c 2`` prefork, Redis broker and result backend, ``task_track_started``.
RQ: two workers (a fork per job). ARQ floor: one bare worker, ``max_jobs=2``, no-op.

The peers run from a venv of their own that this module creates once (Celery 5.7 needs
redis-py >= 6.4; ARQ 0.28 pins redis-py < 6), never from the project's venv:
``$TUSD_PY_BENCH_PEERS_VENV`` or ``~/.cache/tusd-py-bench/peers-venv``.

``python -m bench.peers [--scale F]`` prints the rows; the lead can register
:func:`run` as a scenario in ``bench/scenarios/__init__.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

from bench.harness import BenchEnv, bench_env, median
from bench.report import Row, print_table
from bench.scenarios.throughput import drain_rate
from tusd_py.settings import Settings

PEER_REQUIREMENTS = [
    "celery>=5.7,<5.8",
    "redis>=6.4,<9",
    "rq>=2.0,<3",
    "packaging",
    "tuspyserver>=4.4,<5",
    "uvicorn[standard]>=0.30",
]  # kombu imports packaging; tuspyserver (a FastAPI router) and uvicorn for the ingest peer
ROUNDS = 3
"""Alternated rounds of tusd-py and Celery (medians reported)."""
POLL_DELAY = Settings().worker_poll_interval  # the default the app runs workers with
REPO = Path(__file__).resolve().parent.parent


def peers_python() -> Path:
    """The peers' interpreter, creating their venv on first use."""
    home = Path(os.environ.get("TUSD_PY_BENCH_PEERS_VENV", Path.home() / ".cache/tusd-py-bench/peers-venv"))
    python = home / "bin" / "python"
    marker = home / ".requirements"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if not (python.exists() and marker.exists() and marker.read_text() == wanted):
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
        marker.write_text(wanted)
    return python


def _database(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}" if url.startswith("redis://") else f"{url}?db={db}"


def _json_line(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(env: BenchEnv, scale: float) -> list[Row]:
    count = max(50, int(400 * scale))
    python = str(peers_python())
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    work = env.workdir / "peers"
    # tusd-py and Celery alternate, ROUNDS each, and each reports its median: this VM's
    # speed drifts within a minute (Celery alone measured 390 to 856 tasks/s in one day).
    ours_rounds: list[float] = []
    celery_rounds: list[float] = []
    for _ in range(ROUNDS):
        ours_rounds.append(drain_rate(env, 1, count))
        celery_rounds.append(
            _json_line(
                [
                    python,
                    "-m",
                    "bench.peer_drive",
                    "celery",
                    _database(env.redis.url, 13),
                    str(count),
                    str(work),
                ],
                clean,
            )["tasks_per_s"]
        )
        print(
            f"tusd-py {ours_rounds[-1]:.1f}, celery {celery_rounds[-1]:.1f} tasks/s",
            file=sys.stderr,
            flush=True,
        )
    ours, celery = median(ours_rounds), median(celery_rounds)
    rq = _json_line(
        [python, "-m", "bench.peer_drive", "rq", _database(env.redis.url, 14), str(count), str(work)], clean
    )["tasks_per_s"]
    floor = _json_line(
        [
            sys.executable,
            "-m",
            "bench.arq_floor",
            "drain",
            _database(env.redis.url, 15),
            str(count),
            str(POLL_DELAY),
        ]
    )["tasks_per_s"]
    print(f"rq {rq:.1f}, arq floor {floor:.1f} tasks/s", file=sys.stderr, flush=True)
    env.set_workers(1)
    label = f"{count} x 1 KB"
    return [
        Row("5 vs peers", f"{label}, tusd-py 1 worker (max_jobs=2), median of {ROUNDS}", ours, "tasks/s", celery,
            "Celery prefork -c 2 (result backend, track_started)", ">= 1.0x", ours >= celery),
        Row("5 vs peers", f"{label}, tusd-py vs RQ", ours, "tasks/s", rq, "RQ, 2 workers (fork per job)"),
        Row("5 vs peers", f"{label}, tusd-py vs bare ARQ", ours, "tasks/s", floor,
            "bare ARQ worker max_jobs=2, no-op jobs", ">= 0.9x of floor", ours >= 0.9 * floor),
        Row("5 vs peers", f"Celery prefork -c 2, median of {ROUNDS}", celery, "tasks/s",
            note="rounds: " + ", ".join(f"{c:.0f}" for c in celery_rounds)),
        Row("5 vs peers", f"tusd-py, median of {ROUNDS}", ours, "tasks/s",
            note="rounds: " + ", ".join(f"{o:.0f}" for o in ours_rounds)),
        Row("5 vs peers", "RQ, 2 workers", rq, "tasks/s"),
        Row("5 vs peers", "bare ARQ floor", floor, "tasks/s"),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    with bench_env() as env:
        rows = run(env, args.scale)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench.peer_drive celery|rq REDIS_URL COUNT WORKDIR``, in the peers' venv:
queue COUNT one-kilobyte upper-case jobs while no worker runs, start two worker
processes (Celery prefork ``-c 2``; two RQ workers, a fork per job), wait for every
result and print ``{"tasks_per_s": ...}`` measured from the first job's start to the
last one's finish by the jobs' own clocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _files(workdir: Path, count: int) -> list[tuple[str, str]]:
    source = workdir / "peer-input.txt"
    source.write_bytes(("Grüße aus Köln, straße. " * 60).encode()[:1024])
    out = workdir / "peer-out"
    out.mkdir(exist_ok=True)
    return [(str(source), str(out / f"{i}.txt")) for i in range(count)]


def _env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ, BENCH_PEER_REDIS=redis_url)
    env["PYTHONPATH"] = str(REPO)
    return env


def celery(redis_url: str, count: int, workdir: Path) -> float:
    os.environ["BENCH_PEER_REDIS"] = redis_url
    sys.path.insert(0, str(REPO))
    from bench.peer_celery import app, upper

    app.backend.client.flushdb()
    results = [upper.delay(src, dst) for src, dst in _files(workdir, count)]
    log = (workdir / "celery.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.peer_celery", "worker", "-c", "2", "-P", "prefork",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"],
        cwd=REPO, env=_env(redis_url), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        times = [tuple(r.get(timeout=600)) for r in results]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
    return count / (max(t[1] for t in times) - min(t[0] for t in times))


def rq(redis_url: str, count: int, workdir: Path) -> float:
    from redis import Redis
    from rq import Queue

    sys.path.insert(0, str(REPO))
    from bench.peer_jobs import upper_file

    connection = Redis.from_url(redis_url)
    connection.flushdb()
    queue = Queue("bench", connection=connection)
    jobs = [queue.enqueue(upper_file, src, dst) for src, dst in _files(workdir, count)]
    log = (workdir / "rq.log").open("ab")
    command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "-u", redis_url, "bench", "-q"]
    workers = [
        subprocess.Popen(
            command,
            cwd=REPO,
            env=_env(redis_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.wait(600)
    times = []
    for job in jobs:
        job.refresh()
        value = job.return_value()
        if value is None:
            raise RuntimeError(f"rq job {job.id} has no result: {job.get_status()}")
        times.append(tuple(value))
    return count / (max(t[1] for t in times) - min(t[0] for t in times))


def main() -> int:
    system, redis_url, count, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rate = {"celery": celery, "rq": rq}[system](redis_url, count, workdir)
    print(json.dumps({"tasks_per_s": rate, "wall_s": time.monotonic() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

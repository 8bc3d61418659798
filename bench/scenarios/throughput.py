"""5. 500 tasks of 1 KB drained by one worker, then by two: tasks per second and the ratio.

The tasks are uploaded while no worker runs, so the figure is the workers' drain
rate, measured by the server's clocks from the first start to the last finish.
"""

from __future__ import annotations

import httpx

from bench.harness import BenchEnv, parse_time, text_file
from bench.report import Row


def upload_batch(env: BenchEnv, client: httpx.Client, count: int) -> list[str]:
    source = text_file(env.data_dir, 1024)
    return [env.upload_file(client, source, 1024)[0] for _ in range(count)]


def drain_rate(env: BenchEnv, workers: int, count: int) -> float:
    env.set_workers(0)
    with env.client() as client:
        task_ids = upload_batch(env, client, count)
        env.set_workers(workers)
        # Watch the last task only, slowly: fetching each task as it ends (hundreds of API
        # requests during a one-second drain) took CPU from the worker (481 against 550 to
        # 646 tasks/s measured on the same code); every timestamp is read afterwards.
        env.wait_task(client, task_ids[-1])
        tasks = [env.wait_task(client, task_id) for task_id in task_ids]
    first_start = min(parse_time(str(task["started_at"])) for task in tasks)
    last_finish = max(parse_time(str(task["finished_at"])) for task in tasks)
    return count / (last_finish - first_start)


def run(env: BenchEnv, scale: float) -> list[Row]:
    count = max(20, int(500 * scale))
    one = drain_rate(env, 1, count)
    two = drain_rate(env, 2, count)
    env.set_workers(1)
    return [
        Row("5 small tasks", f"{count} x 1 KB, 1 worker (max_jobs=2)", one, "tasks/s"),
        Row("5 small tasks", f"{count} x 1 KB, 2 workers", two, "tasks/s", one, "1 worker"),
    ]

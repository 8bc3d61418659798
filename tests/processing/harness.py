"""A processing-only test bench: real Redis database, real ARQ worker processes started
with ``run_worker``, tasks submitted with ``submit_task`` — no web app involved."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from arq.connections import ArqRedis, RedisSettings, create_pool

from processing.config import ProcessingConfig
from processing.events import Event, EventLog, event_log_for
from processing.submit import submit_task
from processing.tasks import Task, TaskStore
from tests.support import ChildProcess, async_wait_until
from tusd_py.processing_config import processing_config
from tusd_py.settings import Settings

REPO = Path(__file__).resolve().parents[2]


class Bench:
    def __init__(self, config: ProcessingConfig, arq: ArqRedis, uploads_dir: Path) -> None:
        self.config = config
        self.uploads_dir = uploads_dir
        """The bench's own upload folder (the app's is the tus store's): ``submit`` writes
        a task's bytes here and records that path on the task, as the finish hook does."""
        self.arq = arq
        self.events: EventLog = event_log_for(config, arq)
        self.tasks = TaskStore(arq, self.events)
        self.workers: list[ChildProcess] = []
        self.owner = "owner-" + uuid.uuid4().hex[:8]

    def start_worker(self, **changes: object) -> ChildProcess:
        config = dataclasses.replace(self.config, **changes)  # type: ignore[arg-type]
        fields = {
            f.name: str(getattr(config, f.name))
            if isinstance(getattr(config, f.name), Path)
            else getattr(config, f.name)
            for f in dataclasses.fields(config)
        }
        index = len(self.workers)
        worker = ChildProcess(
            f"worker{index}",
            [sys.executable, "-m", "tests.processing.worker_main", json.dumps(fields)],
            self.config.results_dir.parent / f"worker{index}.log",
            cwd=REPO,
        ).start()
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(f"--- {worker.name}\n" + worker.log()[-3000:] for worker in self.workers)

    def stop_workers(self) -> None:
        """SIGTERM to every worker at once (so their graces overlap), then wait for each."""
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.stop()

    async def submit(self, content: bytes, operation: str = "uppercase", max_attempts: int = 4) -> Task:
        task_id = uuid.uuid4().hex
        path = self.uploads_dir / task_id
        await asyncio.to_thread(path.write_bytes, content)
        return await submit_task(
            self.tasks,
            self.events,
            self.arq,
            task_id=task_id,
            owner=self.owner,
            filename="input.txt",
            size=len(content),
            operation=operation,
            max_attempts=max_attempts,
            source=path,
        )

    async def wait_for(self, task_id: str, predicate: Callable[[Task], bool], within: float = 60.0) -> Task:
        seen: list[Task | None] = [None]

        async def arrived() -> Task | None:
            seen[0] = await self.tasks.get(task_id)
            return seen[0] if seen[0] is not None and predicate(seen[0]) else None

        try:
            return await async_wait_until(arrived, within)
        except AssertionError:
            raise AssertionError(f"task never got there; last seen: {seen[0]}\n{self.logs()}") from None

    async def events_of(self, task_id: str) -> list[Event]:
        return [e for e in await self.events.read(self.owner, "0-0", count=10_000) if e.task.id == task_id]


async def open_bench(tmp_path: Path, database_url: str, **changes: object) -> Bench:
    """A bench on ``database_url`` (the ``redis_database`` fixture's: empty, this test's alone)."""
    # The app's defaults (one source: Settings), with the bounds a test wants shorter.
    settings = Settings(
        data_dir=tmp_path,
        redis_url=database_url,
        job_timeout=30.0,
        shutdown_grace=0.0,
        enable_fault_operations=True,
        worker_poll_interval=0.1,
    )
    config = dataclasses.replace(processing_config(settings), retry_backoff=0.2, lease_ttl=3.0, **changes)  # type: ignore[arg-type]
    uploads_dir = tmp_path / "uploads"
    uploads_dir.mkdir(parents=True, exist_ok=True)
    config.results_dir.mkdir(parents=True, exist_ok=True)
    arq = await create_pool(RedisSettings.from_dsn(database_url))
    return Bench(config, arq, uploads_dir)

"""Where the application's settings meet the processing package.

``processing`` must not import ``tusd_py``, so its configuration is built here
from :class:`Settings`, for the worker role and for the API, whose finish hook
turns a completed upload into a task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from arq.connections import ArqRedis
from redis.asyncio import Redis

from processing.config import ProcessingConfig
from processing.events import EventLog, event_log_for
from processing.operations import validate_operation
from processing.records import filename_from_metadata
from processing.submit import cancel_task, submit_task
from processing.tasks import TaskStore
from processing.uploads import UploadRemover
from tusd_py.settings import Settings

if TYPE_CHECKING:  # the worker role imports this module and must not load the web side
    from tusd_py.tus import UploadInfo


def processing_config(settings: Settings) -> ProcessingConfig:
    assert settings.redis_url is not None
    return ProcessingConfig(
        redis_url=settings.redis_url,
        results_dir=settings.results_dir,
        job_timeout=settings.job_timeout,
        max_tries=settings.max_tries,
        max_jobs=settings.max_jobs,
        result_retention=settings.result_retention,
        shutdown_grace=settings.shutdown_grace,
        event_log_size=settings.event_log_size,
        enable_fault_operations=settings.enable_fault_operations,
        poll_delay=settings.worker_poll_interval,
        max_tries_per_child=settings.max_tasks_per_child,
        max_memory_per_child=settings.max_memory_per_child,
    )


@dataclass(frozen=True)
class ProcessingServices:
    """The API's handles on the processing side, and the two tus hooks built on them."""

    config: ProcessingConfig
    tasks: TaskStore
    events: EventLog
    arq: ArqRedis
    data_path: Callable[[str], Path]
    """Where the upload store keeps an upload's bytes (the store's own answer)."""

    def check_metadata(self, metadata: dict[str, str]) -> None:
        """Refuse an unknown operation at creation, before any byte arrives (ValueError)."""
        validate_operation(metadata, self.config.enable_fault_operations)

    async def submit_upload(self, upload: UploadInfo) -> None:
        """The finish hook: a completed upload becomes a queued task (idempotently)."""
        await submit_task(
            self.tasks,
            self.events,
            self.arq,
            task_id=upload.id,
            owner=upload.owner,
            filename=filename_from_metadata(upload.metadata),
            size=upload.length or 0,
            operation=validate_operation(upload.metadata, self.config.enable_fault_operations),
            max_attempts=self.config.max_tries,
            source=self.data_path(upload.id),
        )

    async def cancel_upload(self, upload: UploadInfo) -> None:
        """The termination hook: a deleted upload's task can no longer run; cancel it."""
        task = await self.tasks.get_for(upload.id, upload.owner)
        if task is not None and not task.status.is_final:
            await cancel_task(self.tasks, self.arq, task)


def upload_remover(settings: Settings) -> UploadRemover:
    """What the worker's housekeeping removes expired uploads with: the tus file store."""
    from tusd_py.tus.filestore import FileStore

    return FileStore(settings.uploads_dir)


def processing_services(settings: Settings, redis: Redis) -> ProcessingServices:
    from tusd_py.tus.filestore import FileStore

    config = processing_config(settings)
    events = event_log_for(config, redis)
    arq = ArqRedis(connection_pool=redis.connection_pool, default_queue_name=config.queue_name)
    store = FileStore(settings.uploads_dir)
    return ProcessingServices(config, TaskStore(redis, events), events, arq, store.data_path)

"""Settings in, :class:`ProcessingConfig` out: the one bridge to the processing side.

``processing`` must not import ``tusd_py``, so its configuration is built here, for the
worker role and for the API's finish hook. A module of its own (no auth, no app wiring),
because the worker process imports it and must not load the web application.
"""

from __future__ import annotations

from processing.config import ProcessingConfig
from processing.uploads import UploadRemover
from tusd_py.settings import Settings


def processing_config(settings: Settings) -> ProcessingConfig:
    if settings.redis_url is None:
        raise ValueError("processing needs settings.redis_url (tusd-py serve starts an embedded Redis)")
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
        storage_quota=settings.storage_quota,
    )


def upload_remover(settings: Settings) -> UploadRemover:
    """What the worker's housekeeping removes expired uploads with: the tus file store,
    the one owner of the upload layout (importing it loads the tus package, not the app)."""
    from tusd_py.tus.filestore import FileStore

    return FileStore(settings.uploads_dir)

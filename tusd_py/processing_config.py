"""Settings in, :class:`ProcessingConfig` out: the one bridge to the processing side.

``processing`` must not import ``tusd_py``, so its configuration is built here, for the
worker role and for the API's finish hook. A module of its own (no Starlette, no auth,
no tus), because the worker process imports it and must not load the web application.
"""

from __future__ import annotations

from processing.config import ProcessingConfig
from tusd_py.settings import Settings


def processing_config(settings: Settings) -> ProcessingConfig:
    if settings.redis_url is None:
        raise ValueError("processing needs settings.redis_url (tusd-py serve starts an embedded Redis)")
    return ProcessingConfig(
        redis_url=settings.redis_url,
        uploads_dir=settings.uploads_dir,
        results_dir=settings.results_dir,
        job_timeout=settings.job_timeout,
        max_tries=settings.max_tries,
        max_jobs=settings.max_jobs,
        result_retention=settings.result_retention,
        shutdown_grace=settings.shutdown_grace,
        event_log_size=settings.event_log_size,
        enable_fault_operations=settings.enable_fault_operations,
        poll_delay=settings.worker_poll_interval,
    )

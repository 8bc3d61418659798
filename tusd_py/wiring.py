"""Where the application's settings meet the processing package.

``processing`` must not import ``tusd_py``, so its configuration is built
here from :class:`Settings` for both the worker role and the API.
"""

from __future__ import annotations

from processing.config import ProcessingConfig

from tusd_py.settings import Settings


def processing_config(settings: Settings) -> ProcessingConfig:
    assert settings.redis_url is not None
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
    )

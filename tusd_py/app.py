"""The Starlette application, assembled from its services.

:func:`create_app` is ``assemble_app(build_services(settings), settings)``: the services
are built in :mod:`tusd_py.wiring`, and here every endpoint gets the ones it uses through
its constructor (as ``auth.routes.AuthEndpoints`` does), so this page shows who uses
what. Nothing is kept in module globals or on ``app.state``: the tests build several
independent apps, and may assemble one from services of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware

from auth.backend import BearerBackend
from auth.routes import AuthEndpoints
from processing.housekeeping import sweep_once
from tusd_py.accounts import AccountRemoval
from tusd_py.console import console_routes
from tusd_py.cors import StrictCORSMiddleware
from tusd_py.docs import docs_routes
from tusd_py.errors import (
    error_response,
    http_exception_handler,
    redis_error_handler,
    unavailable_response,
    unhandled_exception_handler,
)
from tusd_py.events_api import EventEndpoints
from tusd_py.health import health_routes
from tusd_py.hosts import HostGuard, default_allowed_hosts
from tusd_py.metrics import Metrics, MetricsMiddleware
from tusd_py.periodic import every
from tusd_py.processing_config import processing_config
from tusd_py.security_headers import SecurityHeaders
from tusd_py.settings import Settings
from tusd_py.tasks_api import TaskEndpoints
from tusd_py.tus import TUS_VERSION, TusHandler
from tusd_py.usage import Usage
from tusd_py.wiring import Services, build_services

logger = logging.getLogger("tusd_py")

# What tus clients send and need to read (REFERENCE.md, as tusd does).
CORS_ALLOW_HEADERS = [
    "Authorization", "Origin", "X-Requested-With", "X-Request-ID", "X-HTTP-Method-Override",
    "Content-Type", "Upload-Length", "Upload-Offset", "Tus-Resumable", "Upload-Metadata",
    "Upload-Defer-Length", "Upload-Concat", "Upload-Checksum", "Last-Event-ID",
]  # fmt: skip
CORS_EXPOSE_HEADERS = [
    "Upload-Offset", "Location", "Upload-Length", "Tus-Version", "Tus-Resumable", "Tus-Max-Size",
    "Tus-Extension", "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat", "Upload-Expires",
    "Retry-After", "Content-Disposition",
]  # fmt: skip
CORS_ALLOW_METHODS = ["POST", "HEAD", "PATCH", "OPTIONS", "GET", "DELETE"]
SWEEP_INTERVAL = 60.0
"""Seconds between two sweeps of expired unfinished uploads (one node per round)."""
SWEEP_LOCK = "tusd:lock:upload-sweep"
HOUSEKEEPING_ROUND_LOCK = "tusd:lock:housekeeping-round"
"""One API node per round tries; the sweep itself takes processing's housekeeping lock,
which it shares with the workers' cron (see processing/housekeeping.py)."""


def create_app(settings: Settings) -> Starlette:
    """The whole API for ``settings`` (which must name a Redis)."""
    return assemble_app(build_services(settings), settings)


def assemble_app(services: Services, settings: Settings) -> Starlette:
    """Mount every endpoint on the services it uses; the app's lifespan closes ``services.redis``."""
    tus = TusHandler(
        services.upload_store,
        services.locker,
        services.hooks,
        max_size=settings.max_upload_size,
        expiry_seconds=settings.upload_expiry,
        trust_proxy=settings.trust_proxy,
        quota=services.quota,
        idle_seconds=settings.upload_idle_timeout,
        storage=services.storage,
    )
    auth = AuthEndpoints(
        services.users,
        services.passwords,
        services.tokens,
        services.throttle,
        on_account_removed=AccountRemoval(
            services.tasks,
            services.arq,
            services.events,
            services.ledger,
            services.quota,
            tus.remove_upload,
            results_dir=settings.results_dir,
        ),
        usage=Usage(
            services.ledger,
            services.quota,
            services.tasks,
            max_unfinished_tasks=settings.max_unfinished_tasks,
        ),
    )
    tasks = TaskEndpoints(
        services.tasks,
        services.arq,
        results_dir=settings.results_dir,
        enable_fault_operations=settings.enable_fault_operations,
    )
    events = EventEndpoints(services.tasks, services.events, services.tokens, services.slots)
    backend = BearerBackend(
        services.tokens,
        render_error=error_response,
        render_unavailable=unavailable_response,
        path_headers={tus.base_path: {"Tus-Resumable": TUS_VERSION}},
        locked_paths=(tus.base_path,),
    )
    metrics = Metrics(token=settings.metrics_token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        sweeper = asyncio.create_task(every(SWEEP_INTERVAL, services.redis, SWEEP_LOCK, tus.sweep_expired))
        config = processing_config(settings)
        housekeeper = asyncio.create_task(  # also here, so it never waits for a worker
            every(
                settings.housekeeping_interval,
                services.redis,
                HOUSEKEEPING_ROUND_LOCK,
                lambda: sweep_once(
                    services.tasks, services.arq, config, services.upload_store, services.ledger
                ),
            )
        )
        try:
            yield
        finally:
            sweeper.cancel()
            housekeeper.cancel()
            await services.redis.aclose()

    return Starlette(
        routes=[
            *health_routes(services.redis),
            *docs_routes(),
            *console_routes(),
            *metrics.routes(),
            *auth.routes,
            *tus.routes,
            *tasks.routes,
            *events.routes,
        ],
        middleware=[
            Middleware(
                HostGuard,
                allowed_hosts=settings.allowed_hosts or default_allowed_hosts(settings.host),
                public_url=settings.public_url,
                trust_proxy=settings.trust_proxy,
            ),
            Middleware(SecurityHeaders),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(
                StrictCORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=CORS_ALLOW_METHODS,
                allow_headers=CORS_ALLOW_HEADERS,
                expose_headers=CORS_EXPOSE_HEADERS,
                max_age=86400,
            ),
            Middleware(AuthenticationMiddleware, backend=backend, on_error=backend.on_error),
        ],
        exception_handlers={
            HTTPException: http_exception_handler,
            RedisError: redis_error_handler,
            Exception: unhandled_exception_handler,
        },
        lifespan=lifespan,
    )

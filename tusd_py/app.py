"""The Starlette application factory: wires auth, tus, tasks, events and docs.

Everything a request handler needs is built here from :class:`Settings` and
handed over through ``app.state``; nothing is kept in module globals, so the
factory can build several independent apps (as the tests do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware

from auth.backend import BearerBackend, on_auth_error
from auth.config import AuthConfig
from auth.passwords import PasswordService
from auth.ratelimit import LoginThrottle
from auth.routes import AuthEndpoints
from auth.secret import load_or_create_secret
from auth.tokens import TokenService
from auth.users import UserStore
from tusd_py import events_api, tasks_api
from tusd_py.console import console_routes
from tusd_py.cors import StrictCORSMiddleware
from tusd_py.docs import docs_routes
from tusd_py.errors import http_exception_handler, unhandled_exception_handler
from tusd_py.health import health_routes
from tusd_py.metrics import Metrics, MetricsMiddleware
from tusd_py.periodic import every
from tusd_py.settings import Settings
from tusd_py.uploads import build_tus
from tusd_py.wiring import processing_services

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
SWEEP_INTERVAL = 60.0
"""Seconds between two sweeps of expired unfinished uploads (one node per round)."""
CORS_ALLOW_METHODS = ["POST", "HEAD", "PATCH", "OPTIONS", "GET", "DELETE"]


def jwt_secret(settings: Settings) -> bytes:
    if settings.jwt_secret:
        return settings.jwt_secret.encode()
    return load_or_create_secret(settings.data_dir / "jwt.secret")


def create_app(settings: Settings) -> Starlette:
    if settings.redis_url is None:
        raise ValueError("create_app needs settings.redis_url (tusd-py serve starts an embedded Redis)")
    redis = Redis.from_url(settings.redis_url)
    auth_config = AuthConfig(
        secret=jwt_secret(settings),
        access_token_ttl=settings.access_token_ttl,
        refresh_token_ttl=settings.refresh_token_ttl,
        argon2_profile=settings.argon2_profile,
        login_rate_limit=settings.login_rate_limit,
    )
    tokens = TokenService(redis, auth_config)
    auth_endpoints = AuthEndpoints(
        UserStore(redis),
        PasswordService(settings.argon2_profile),
        tokens,
        LoginThrottle(settings.redis_url, settings.login_rate_limit),
    )

    processing = processing_services(settings, redis)
    tus = build_tus(
        settings,
        redis,
        on_complete=processing.submit_upload,
        check_metadata=processing.check_metadata,
        on_terminate=processing.cancel_upload,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        sweeper = asyncio.create_task(
            every(SWEEP_INTERVAL, redis, "tusd:lock:upload-sweep", tus.sweep_expired)
        )
        try:
            yield
        finally:
            sweeper.cancel()
            await redis.aclose()

    metrics = Metrics()
    routes = [
        *health_routes(),
        *docs_routes(),
        *console_routes(),
        *metrics.routes(),
        *auth_endpoints.routes,
        *tus.routes,
        *tasks_api.routes,
        *events_api.routes,
    ]
    middleware = [
        Middleware(MetricsMiddleware, metrics=metrics),
        Middleware(
            StrictCORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=CORS_ALLOW_METHODS,
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=86400,
        ),
        Middleware(AuthenticationMiddleware, backend=BearerBackend(tokens), on_error=on_auth_error),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            HTTPException: http_exception_handler,
            Exception: unhandled_exception_handler,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.redis = redis
    app.state.tokens = tokens
    app.state.tasks = processing.tasks
    app.state.events = processing.events
    app.state.arq = processing.arq
    return app

"""Prometheus metrics: ``GET /metrics`` and a middleware that counts requests.

Requests are labelled by route template (``/files/{upload_id}``, never the id
itself), method and status, so the number of series stays small. The template is
the route Starlette's router already chose (``scope["route"]``): no second match.

``/metrics`` is not public: route templates, status counts and latencies help
an attacker. Without ``TUSD_PY_METRICS_TOKEN`` it answers 404; with it, only a
request with ``Authorization: Bearer <token>`` gets the metrics (401 otherwise).
The middleware answers it itself, before the JWT authentication middleware
(which would take the metrics token for a malformed JWT). A Prometheus job sets
``authorization: {type: Bearer, credentials_file: /run/secrets/tusd_metrics}``.

With several API processes on one port (:mod:`tusd_py.api_nodes`) a scrape reaches any
one of them, so each answers for all: prometheus-client's multiprocess mode, where every
process writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (set for the
processes by their parent before prometheus-client is imported) and the answer sums them.
"""

from __future__ import annotations

import hmac
import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """One registry per app, so that several apps in one process (tests) stay apart."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.registry = CollectorRegistry()
        self.exposed = self.registry
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if shared:
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, path=shared)
        self.requests = Counter(
            "tusd_http_requests_total", "HTTP requests answered.", ["route", "method", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "tusd_http_request_duration_seconds", "Time to answer an HTTP request.", ["route", "method"],
            registry=self.registry,
        )  # fmt: skip

    async def endpoint(self, request: Request) -> Response:
        if self.token is None:
            return JSONResponse({"error": {"code": "not_found", "message": "not found"}}, status_code=404)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            body = {"error": {"code": "unauthorized", "message": "the metrics token is required"}}
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return Response(
            generate_latest(self.exposed),
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    def routes(self) -> list[BaseRoute]:
        """:class:`MetricsMiddleware` answers GET ahead of authentication; the route is here
        so that other methods get the router's 405."""
        return [Route("/metrics", self.endpoint, methods=["GET"])]


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            response = await self.metrics.endpoint(Request(scope, receive))
            await response(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route, method = getattr(scope.get("route"), "path", "unmatched"), scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)

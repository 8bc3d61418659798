"""``/healthz`` (the process answers) and ``/readyz`` (and Redis answers too)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from tusd_py.errors import error_response

READY_TIMEOUT = 2.0


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def health_routes(redis: Redis) -> list[BaseRoute]:
    """``/readyz`` pings ``redis``, the one service every other route depends on."""

    async def readyz(request: Request) -> JSONResponse:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await redis.ping()
        except (RedisError, OSError, TimeoutError):
            return error_response(503, "redis_unavailable", "Redis does not answer")
        return JSONResponse({"status": "ready"})

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]

"""A tus-only service for the protocol tests: ``python -m tests.tus.server --port ...``.

A real Starlette app with :class:`TusHandler`, the file store, the Redis locker
and quota, run by uvicorn, like the API does, but with knobs the full service
does not expose (tiny sizes, short lock TTLs). The caller is whoever
``Authorization: Bearer <owner>`` names. The finish hook appends to the Redis
list ``<prefix>finished:<id>`` (so tests count its runs across processes) and
fails while ``<prefix>fail-finish`` exists; ``<prefix>finish-delay`` (seconds)
slows it down to widen races.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tusd_py.tus import FileStore, Hooks, RedisLocker, RedisQuota, TusError, TusHandler, UploadInfo


def build_app(
    directory: Path,
    redis_url: str,
    *,
    prefix: str = "tus-test:",
    max_size: int = 10 * 1024 * 1024,
    expiry: float = 3600,
    lock_wait: float = 2.0,
    lock_ttl: float = 3.0,
    max_uploads: int = 1000,
    max_bytes: int = 1 << 40,
    trust_proxy: bool = False,
    node: str | None = None,
) -> tuple[Starlette, TusHandler]:
    redis = Redis.from_url(redis_url)

    async def authenticate(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    async def pre_create(request: Request, info: UploadInfo) -> None:
        if info.metadata.get("operation") == "bogus":
            raise TusError(400, "invalid_metadata", "unknown operation 'bogus'")

    async def post_finish(info: UploadInfo) -> None:
        delay = await redis.get(prefix + "finish-delay")
        if delay:
            await asyncio.sleep(float(delay))
        if await redis.exists(prefix + "fail-finish"):
            raise RuntimeError("finish hook told to fail")
        await redis.rpush(f"{prefix}finished:{info.id}", info.owner)

    async def post_terminate(info: UploadInfo) -> None:
        await redis.rpush(f"{prefix}terminated:{info.id}", info.owner)

    handler = TusHandler(
        FileStore(directory),
        RedisLocker(redis, prefix=prefix + "lock:", ttl=lock_ttl, node=node),
        Hooks(authenticate, pre_create, post_finish, post_terminate),
        max_size=max_size,
        expiry_seconds=expiry,
        trust_proxy=trust_proxy,
        quota=RedisQuota(redis, max_uploads=max_uploads, max_bytes=max_bytes, prefix=prefix + "pending:"),
        lock_wait=lock_wait,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await redis.aclose()

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/healthz", healthz), *handler.routes], lifespan=lifespan)
    return app, handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="tus-test:")
    parser.add_argument("--max-size", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--expiry", type=float, default=3600)
    parser.add_argument("--lock-wait", type=float, default=2.0)
    parser.add_argument("--lock-ttl", type=float, default=3.0)
    parser.add_argument("--max-uploads", type=int, default=1000)
    parser.add_argument("--max-bytes", type=int, default=1 << 40)
    parser.add_argument("--trust-proxy", action="store_true")
    args = parser.parse_args()
    app, _ = build_app(
        args.dir,
        args.redis_url,
        prefix=args.prefix,
        max_size=args.max_size,
        expiry=args.expiry,
        lock_wait=args.lock_wait,
        lock_ttl=args.lock_ttl,
        max_uploads=args.max_uploads,
        max_bytes=args.max_bytes,
        trust_proxy=args.trust_proxy,
        node=f"127.0.0.1:{args.port}",  # stable across restarts, as the API's host:port
    )
    logging.basicConfig(level=logging.WARNING)
    # proxy_headers=False: the handler alone decides whether X-Forwarded-* count.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", proxy_headers=False)


if __name__ == "__main__":
    main()

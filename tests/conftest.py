"""Suite-wide fixtures: a private redis-server and a live tusd-py service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support import METRICS_TOKEN, RedisDatabases, Service, User, free_port, start_service
from tusd_py.embedded_redis import RedisProcess


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a free port: never the shared one on 6379."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"), port=free_port(), persistent=False)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Service]:
    """The shared API + one worker, default settings but a cheap Argon2 profile."""
    service = start_service(
        tmp_path_factory.mktemp("live"),
        redis_url,
        workers=1,
        enable_fault_operations="true",
        login_rate_limit="10000/minute",  # the rate-limit test has a service of its own
        login_address_rate_limit="100000/minute",
        register_rate_limit="100000/minute",
        metrics_token=METRICS_TOKEN,
    )
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_databases(redis_url: str) -> RedisDatabases:
    """The pool of spare databases of the suite's Redis (see :class:`RedisDatabases`)."""
    return RedisDatabases(redis_url)


@pytest.fixture
def redis_database(redis_databases: RedisDatabases) -> Iterator[str]:
    """The URL of an empty database of the suite's Redis, this test's alone."""
    url = redis_databases.acquire()
    yield url
    redis_databases.release(url)


@pytest.fixture
def service_factory(tmp_path: Path, redis_databases: RedisDatabases) -> Iterator[Callable[..., Service]]:
    """Start services with custom settings, each on an empty Redis database of its own (not
    the shared one's ARQ queue); all of them are stopped after the test."""
    started: list[tuple[Service, str]] = []

    def make(*, workers: int = 0, **settings: str) -> Service:
        url = redis_databases.acquire()
        try:
            service = start_service(tmp_path / f"svc{len(started)}", url, workers=workers, **settings)
        except BaseException:
            redis_databases.release(url)
            raise
        started.append((service, url))
        return service

    yield make
    for service, url in started:
        service.stop()
        redis_databases.release(url)


@pytest.fixture
def user(live: Service) -> User:
    return live.register()


@pytest.fixture
def other_user(live: Service) -> User:
    return live.register()

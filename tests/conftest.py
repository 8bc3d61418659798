"""Suite-wide fixtures: a private redis-server and a live tusd-py service."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis import Redis as SyncRedis

from tests.support import Service, User, free_port, start_service
from tusd_py.embedded_redis import RedisProcess

METRICS_TOKEN = "metrics-token-for-the-suite-0123456789"


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


_database_counter = itertools.count()


def _spare_databases(redis_url: str) -> Iterator[str]:
    """Databases 1-8, emptied before use: a custom service must not see the
    shared one's ARQ queue (database 0), nor another custom service's.
    (Processing tests use 9-14 for bare workers, the contract test 15.)"""
    while True:
        url = redis_url.rsplit("/", 1)[0] + f"/{1 + next(_database_counter) % 8}"
        client = SyncRedis.from_url(url)
        client.flushdb()
        client.close()
        yield url


@pytest.fixture
def service_factory(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., Service]]:
    """Start services with custom settings; all of them are stopped after the test."""
    started: list[Service] = []

    def make(*, workers: int = 0, **settings: str) -> Service:
        url = next(_spare_databases(redis_url))
        service = start_service(tmp_path / f"svc{len(started)}", url, workers=workers, **settings)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


@pytest.fixture
def user(live: Service) -> User:
    return live.register()


@pytest.fixture
def other_user(live: Service) -> User:
    return live.register()

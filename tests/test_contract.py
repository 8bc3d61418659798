"""Schemathesis: the app, in-process, against the hand-written openapi.yaml.

Every documented operation is called with generated (valid and invalid) data,
authenticated as a real user in a real Redis; responses must match the
documented statuses, headers and schemas, and no call may answer 5xx.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from auth.config import AuthConfig
from auth.tokens import TokenService
from auth.users import UserStore
from tusd_py.app import create_app
from tusd_py.settings import Settings

SECRET = "contract-test-secret-that-is-long-enough-0123456789"
CONTRACT_DB = 15  # the service factory uses databases 1-14


def contract_settings(redis_url: str, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        redis_url=redis_url.rsplit("/", 1)[0] + f"/{CONTRACT_DB}",
        jwt_secret=SECRET,
        argon2_profile="fast",
        login_rate_limit="100000/minute",
        max_pending_uploads=1000,
        allowed_hosts=("testserver",),  # the in-process client's Host
        metrics_token="contract-metrics-token-0123456789abcdef",
        register_rate_limit="100000/minute",
        login_address_rate_limit="100000/minute",
    )


async def _fresh_token(
    settings: Settings, user_id: str | None, username: str = "contract_user"
) -> tuple[str, str]:
    redis = Redis.from_url(str(settings.redis_url))
    try:
        if user_id is None:
            user_id = (await UserStore(redis).create(username, "unused-hash")).id
        pair = await TokenService(redis, AuthConfig(secret=SECRET.encode())).issue_pair(user_id)
        return user_id, pair.access_token
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def contract(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    settings = contract_settings(redis_url, tmp_path_factory.mktemp("contract"))
    with SyncRedis.from_url(str(settings.redis_url)) as client:
        client.flushdb()
    user_id, _ = asyncio.run(_fresh_token(settings, None))
    yield settings, user_id


@pytest.fixture(scope="module")
def api_schema(contract: tuple[Settings, str]) -> schemathesis.BaseSchema:
    settings, user_id = contract
    _CONTRACT.update(settings=settings, user_id=user_id)
    return schemathesis.openapi.from_asgi("/openapi.yaml", create_app(settings))


_CONTRACT: dict[str, object] = {}


@schemathesis.auth(refresh_interval=None)
class FreshBearerToken:
    """A new token for every call: a generated /auth/logout must not revoke the next call's."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        settings, user_id = _CONTRACT["settings"], _CONTRACT["user_id"]
        assert isinstance(settings, Settings) and isinstance(user_id, str)
        if case.path == "/auth/logout-all":  # it ends every session of its user: use a throwaway one
            return asyncio.run(_fresh_token(settings, None, f"contract_{uuid.uuid4().hex[:12]}"))[1]
        return asyncio.run(_fresh_token(settings, user_id))[1]

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# /events waits for the next event (there may be none), so it is left to tests/processing.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/events")


@schemathesis.serializer("application/offset+octet-stream")
def offset_octet_stream(context: schemathesis.SerializationContext, value: object) -> bytes:
    """tus bodies are raw bytes; generated strings are sent as their UTF-8 encoding."""
    return value if isinstance(value, bytes) else str(value).encode()


@schema.parametrize()
@hypothesis.settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
)
def test_app_matches_openapi(case: schemathesis.Case) -> None:
    # Valid-looking input may still be refused for good reasons (an unknown id
    # is 404, a taken username 409), so acceptance of positive data is not required.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])

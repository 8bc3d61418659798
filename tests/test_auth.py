"""Accounts and tokens against a live API on a real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest
from redis import Redis as SyncRedis

from tests.support import Service, User, unique_name

PASSWORD = "correct horse battery"


def secret_of(service: Service) -> bytes:
    return (service.data_dir / "jwt.secret").read_bytes()


def forge(
    service: Service, user: User, *, key: bytes | None = None, algorithm: str = "HS256", **changes: object
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user.id,
        "fam": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "iss": "tusd-py",
        "aud": "tusd-py",
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key or secret_of(service), algorithm=algorithm)


def me(service: Service, token: str) -> httpx.Response:
    return httpx.get(f"{service.base_url}/auth/me", headers={"Authorization": f"Bearer {token}"})


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthorized"


def test_register_login_me(live: Service) -> None:
    username = unique_name()
    with live.client() as client:
        created = client.post("/auth/register", json={"username": username, "password": PASSWORD})
        assert created.status_code == 201
        assert created.json() == {"id": created.json()["id"], "username": username}
        login = client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200
    body = login.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    response = me(live, body["access_token"])
    assert response.json() == {
        "id": created.json()["id"],
        "username": username,
        "usage": {
            "bytes_used": 0,
            "bytes_allowed": 10 * 1024**3,
            "unfinished_uploads": 0,
            "unfinished_tasks": 0,
            "unfinished_tasks_allowed": 1000,
        },
    }


def test_username_taken_case_insensitively(live: Service, user: User) -> None:
    with live.client() as client:
        again = client.post("/auth/register", json={"username": user.username.upper(), "password": PASSWORD})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "username_taken"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "ab", "password": PASSWORD}, 422),
        ({"username": "x" * 65, "password": PASSWORD}, 422),
        ({"username": "bad name", "password": PASSWORD}, 422),
        ({"username": "fine_name", "password": "short"}, 422),
        ({"username": "fine_name", "password": "p" * 1025}, 422),
        ({"username": "fine_name"}, 422),
        ({"username": 5, "password": PASSWORD}, 422),
        ({"username": "fine_name", "password": PASSWORD, "admin": True}, 422),
        ([1, 2], 422),
    ],
)
def test_register_rejects_bad_bodies(live: Service, body: object, status: int) -> None:
    response = httpx.post(f"{live.base_url}/auth/register", json=body)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"code", "message"}


def test_register_rejects_invalid_json_and_wrong_type(live: Service) -> None:
    bad_json = httpx.post(
        f"{live.base_url}/auth/register", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["code"] == "invalid_json"
    form = httpx.post(f"{live.base_url}/auth/register", data={"username": "abc", "password": PASSWORD})
    assert form.status_code == 415


def test_long_password_is_not_truncated(live: Service) -> None:
    password = "a" * 1000 + "X"
    user = live.register(password=password)
    wrong = httpx.post(
        f"{live.base_url}/auth/login", json={"username": user.username, "password": "a" * 1000 + "Y"}
    )
    assert wrong.status_code == 401


def test_wrong_password_and_unknown_user_look_alike(live: Service, user: User) -> None:
    with live.client() as client:
        wrong = client.post("/auth/login", json={"username": user.username, "password": "not the password"})
        unknown = client.post("/auth/login", json={"username": unique_name(), "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_refresh_rotates_and_reuse_revokes_family(live: Service, user: User) -> None:
    with live.client() as client:
        first = client.post("/auth/refresh", json={"refresh_token": user.tokens["refresh_token"]})
        assert first.status_code == 200
        pair = first.json()
        assert pair["refresh_token"] != user.tokens["refresh_token"]
        assert me(live, pair["access_token"]).status_code == 200
        # The rotated token comes back: someone copied it. Revoke the family.
        reuse = client.post("/auth/refresh", json={"refresh_token": user.tokens["refresh_token"]})
        assert_401(reuse)
        assert_401(client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}))
    assert_401(me(live, pair["access_token"]))


def test_unknown_refresh_token(live: Service) -> None:
    assert_401(httpx.post(f"{live.base_url}/auth/refresh", json={"refresh_token": "nope"}))


def test_logout_revokes_access_and_refresh(live: Service, user: User) -> None:
    with live.client(user) as client:
        assert client.get("/auth/me").status_code == 200  # the API now remembers the decode
        assert client.post("/auth/logout").status_code == 204
        assert_401(client.get("/auth/me"))
        assert_401(client.post("/auth/refresh", json={"refresh_token": user.tokens["refresh_token"]}))


def test_a_token_the_api_remembers_is_refused_once_it_expires(live: Service, user: User) -> None:
    """The API decodes a token once (auth.tokens.VERIFIED_TOKENS); the expiry is still
    checked on every request."""
    token = forge(live, user, exp=int(time.time()) + 2)
    assert me(live, token).status_code == 200
    assert me(live, token).status_code == 200  # remembered
    time.sleep(max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.1)
    assert_401(me(live, token))


def test_protected_routes_need_a_token(live: Service) -> None:
    assert_401(httpx.get(f"{live.base_url}/auth/me"))
    assert_401(httpx.get(f"{live.base_url}/auth/me", headers={"Authorization": "Basic abc"}))
    assert_401(httpx.get(f"{live.base_url}/auth/me", headers={"Authorization": "Bearer"}))
    assert_401(httpx.post(f"{live.base_url}/auth/logout"))


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda s, u: "not-a-jwt", id="malformed"),
        pytest.param(lambda s, u: forge(s, u, key=b"k" * 48), id="wrong-key"),
        pytest.param(lambda s, u: forge(s, u, exp=int(time.time()) - 5), id="expired"),
        pytest.param(lambda s, u: forge(s, u, exp=None), id="no-exp"),
        pytest.param(lambda s, u: forge(s, u, jti=None), id="no-jti"),
        pytest.param(lambda s, u: forge(s, u, iat=None), id="no-iat"),
        pytest.param(lambda s, u: forge(s, u, aud="someone-else"), id="wrong-audience"),
        pytest.param(lambda s, u: forge(s, u, iss="someone-else"), id="wrong-issuer"),
        pytest.param(lambda s, u: forge(s, u, sub=uuid.uuid4().hex), id="unknown-user"),
        pytest.param(
            lambda s, u: jwt.encode({"sub": u.id, "exp": int(time.time()) + 60}, None, algorithm="none"),
            id="alg-none",
        ),
        pytest.param(lambda s, u: forge(s, u, algorithm="HS512"), id="other-alg"),
    ],
)
def test_forged_tokens_are_refused(
    live: Service, user: User, make_token: Callable[[Service, User], str]
) -> None:
    assert me(live, forge(live, user)).status_code == 200  # the forger has the real key
    assert_401(me(live, make_token(live, user)))


def test_ticket_is_not_an_access_token(live: Service, user: User) -> None:
    with live.client(user) as client:
        ticket = client.post("/auth/ticket").json()
    assert ticket["expires_in"] == 60
    assert_401(me(live, ticket["ticket"]))


def test_deleted_user_token_is_refused(live: Service, redis_url: str) -> None:
    user = live.register()
    assert me(live, user.access_token).status_code == 200
    client = SyncRedis.from_url(redis_url)
    client.delete(f"auth:user:{user.id}")
    client.close()
    assert_401(me(live, user.access_token))


def test_failed_logins_are_rate_limited(service_factory: Callable[..., Service]) -> None:
    service = service_factory(login_rate_limit="3/minute", login_address_rate_limit="4/minute")
    user = service.register()
    with service.client() as client:
        for _ in range(3):
            failed = client.post(
                "/auth/login", json={"username": user.username, "password": "wrong password"}
            )
            assert failed.status_code == 401
        limited = client.post("/auth/login", json={"username": user.username, "password": PASSWORD})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["error"]["code"] == "too_many_attempts"
        # The per-username-and-address budget is spent, and with it this address's budget
        # (4 attempts: the registration's login and 3 failures): another username is held back.
        other = client.post("/auth/login", json={"username": unique_name(), "password": PASSWORD})
        assert other.status_code == 429


def test_a_successful_login_clears_the_pair_budget(service_factory: Callable[..., Service]) -> None:
    service = service_factory(login_rate_limit="3/minute")
    user = service.register()
    with service.client() as client:
        for _ in range(3):
            for password in ("wrong password", PASSWORD):
                response = client.post("/auth/login", json={"username": user.username, "password": password})
                assert response.status_code == (401 if password != PASSWORD else 200)


def test_secret_file_is_private(live: Service) -> None:
    mode = (live.data_dir / "jwt.secret").stat().st_mode & 0o777
    assert mode == 0o600
    assert len(secret_of(live)) >= 32

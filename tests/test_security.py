"""Issue 12: what an adversarial probe found, each closed, against a real server and Redis."""

from __future__ import annotations

import asyncio
import selectors
import socket
import stat
import time
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest

from tests.support import METRICS_TOKEN, Service, User, unique_name

PASSWORD = "correct horse battery"
Factory = Callable[..., Service]


def from_address(service: Service, address: str, **kwargs: object) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x address is loopback)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=service.base_url, transport=transport, timeout=30.0, **kwargs)  # type: ignore[arg-type]


def login_body(user: User, password: str | None = None) -> dict[str, str]:
    return {"username": user.username, "password": password or user.password}


# -- item 4: registration ---------------------------------------------------


def test_registration_is_limited_per_address(service_factory: Factory) -> None:
    service = service_factory(register_rate_limit="3/minute")
    with service.client() as client:
        statuses = [
            client.post("/auth/register", json={"username": unique_name(), "password": PASSWORD}).status_code
            for _ in range(4)
        ]
        limited = client.post("/auth/register", json={"username": unique_name(), "password": PASSWORD})
    assert statuses == [201, 201, 201, 429]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "too_many_attempts"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    with from_address(service, "127.0.0.2") as elsewhere:
        other = elsewhere.post("/auth/register", json={"username": unique_name(), "password": PASSWORD})
    assert other.status_code == 201


# -- item 5: login limit before the check; owners are not locked out --------


def test_concurrent_wrong_passwords_meet_the_limit_and_the_owner_still_logs_in(
    service_factory: Factory,
) -> None:
    service = service_factory(login_rate_limit="10/minute")
    owner = service.register()

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=60.0) as client:
            answers = await asyncio.gather(
                *(client.post("/auth/login", json=login_body(owner, "wrong password")) for _ in range(30))
            )
        return [answer.status_code for answer in answers]

    statuses = asyncio.run(burst())
    assert sorted(statuses) == [401] * 10 + [429] * 20
    with service.client() as stranger:
        assert stranger.post("/auth/login", json=login_body(owner)).status_code == 429
    # The stranger spent only their own budget: the owner, elsewhere, logs in at once.
    with from_address(service, "127.0.0.2") as home:
        assert home.post("/auth/login", json=login_body(owner)).status_code == 200


def test_per_username_ceiling_holds_across_addresses(service_factory: Factory) -> None:
    service = service_factory(login_rate_limit="100/minute", login_user_rate_limit="4/minute")
    owner = service.register()  # its successful login counts once
    for address in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
        with from_address(service, address) as client:
            assert client.post("/auth/login", json=login_body(owner, "wrong password")).status_code == 401
    with from_address(service, "127.0.0.6") as client:
        assert client.post("/auth/login", json=login_body(owner, "wrong password")).status_code == 429


# -- item 6: event streams end with their session; tickets stay out of logs --


def forged_token(service: Service, user: User, ttl: int) -> str:
    now = int(time.time())
    claims = {"sub": user.id, "fam": uuid.uuid4().hex, "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
    claims |= {"iss": "tusd-py", "aud": "tusd-py", "ep": 0}
    return jwt.encode(claims, (service.data_dir / "jwt.secret").read_bytes(), algorithm="HS256")


def end_session(how: str, service: Service, user: User) -> None:
    with service.client(user) as client:
        if how == "logout":
            assert client.post("/auth/logout").status_code == 204
        elif how == "logout-all":
            assert client.post("/auth/logout-all").status_code == 204
        elif how == "refresh-reuse":
            refresh = {"refresh_token": user.tokens["refresh_token"]}
            assert client.post("/auth/refresh", json=refresh).status_code == 200
            assert client.post("/auth/refresh", json=refresh).status_code == 401  # reuse: family revoked
        elif how == "account-removal":
            assert client.request("DELETE", "/auth/me", json={"password": user.password}).status_code == 204
        elif how == "password-change":
            body = {"old_password": user.password, "new_password": "another horse battery"}
            assert client.post("/auth/password", json=body).status_code == 200


@pytest.mark.parametrize(
    "how", ["logout", "logout-all", "refresh-reuse", "account-removal", "password-change"]
)
@pytest.mark.parametrize("via", ["bearer", "ticket"])
def test_event_stream_closes_when_its_session_ends(live: Service, how: str, via: str) -> None:
    user = live.register()
    if via == "ticket":
        with live.client(user) as client:
            ticket = client.post("/auth/ticket").json()["ticket"]
        url, headers = f"{live.base_url}/events?ticket={ticket}", {}
    else:
        url, headers = f"{live.base_url}/events", user.headers
    # A read timeout far below the 15 s keep-alive ping: the stream must end by itself.
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(30.0, read=10.0)) as stream:
        assert stream.status_code == 200
        end_session(how, live, user)
        for _ in stream.iter_lines():
            pass
    assert httpx.get(url, headers=headers).status_code == 401


def test_event_stream_closes_when_its_token_expires(live: Service) -> None:
    user = live.register()
    token = forged_token(live, user, ttl=3)
    with httpx.stream(
        "GET",
        f"{live.base_url}/events",
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(30.0, read=10.0),
    ) as stream:
        assert stream.status_code == 200
        for _ in stream.iter_lines():
            pass


def test_tickets_are_reusable_and_never_logged(service_factory: Factory) -> None:
    service = service_factory(log_level="info")
    user = service.register()
    with service.client(user) as client:
        issued = client.post("/auth/ticket")
    assert issued.headers["cache-control"] == "no-store"
    ticket = issued.json()["ticket"]
    for _ in range(2):  # EventSource reconnects with the same URL
        with httpx.stream("GET", f"{service.base_url}/events?ticket={ticket}", timeout=10.0) as stream:
            assert stream.status_code == 200
    log = (service.data_dir / "api.log").read_text()
    assert "/events?[redacted]" in log
    assert ticket not in log and user.access_token not in log


# -- item 7: half-open connections and stalled bodies -----------------------


def _closed_by_server(sockets: list[socket.socket], deadline: float) -> tuple[int, int]:
    """Wait until the server has closed every socket; (how many got a 503, how many closed)."""
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytes] = {}
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
        received[sock] = b""
    closed = 0
    while closed < len(sockets) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            received[sock] += chunk
            if not chunk:
                selector.unregister(sock)
                closed += 1
    selector.close()
    busy = sum(1 for data in received.values() if data.startswith(b"HTTP/1.1 503"))
    return busy, closed


def test_trickling_connections_cannot_hold_the_server(service_factory: Factory) -> None:
    service = service_factory(header_timeout="2", max_connections_per_address="50", max_connections="2000")
    port = int(service.base_url.rsplit(":", 1)[1])
    tricklers: list[socket.socket] = []
    try:
        for _ in range(3000):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            tricklers.append(sock)
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]  # never send a byte
        # Meanwhile another address is served normally.
        with from_address(service, "127.0.0.2") as other:
            assert other.get("/healthz").status_code == 200
        for sock in tricklers[10:20]:  # keep trickling: another header line, still unfinished
            sock.sendall(b"X-Slow: 1\r\n")
        busy, closed = _closed_by_server(tricklers + silent, time.monotonic() + 30)
        assert closed == len(tricklers) + len(silent)  # nobody held a connection past the deadline
        assert busy >= 3000 - 50  # everyone past the per-address cap was told 503
    finally:
        for sock in tricklers:
            sock.close()
    with service.client() as client:  # and the server is fine afterwards
        assert client.get("/healthz").status_code == 200


def test_total_connection_cap_answers_503(service_factory: Factory) -> None:
    service = service_factory(max_connections="5", header_timeout="10")
    port = int(service.base_url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    try:
        with from_address(service, "127.0.0.2") as other:
            refused = other.get("/healthz")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "unavailable"
    finally:
        for sock in held:
            sock.close()


def test_a_stalled_body_is_dropped_and_its_bytes_kept(service_factory: Factory) -> None:
    service = service_factory(body_idle_timeout="1")
    user = service.register()
    with service.client(user) as client:
        created = client.post("/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100"})
        assert created.status_code == 201
        path = created.headers["location"].split(str(service.base_url.rsplit(":", 1)[1]), 1)[1]
        port = int(service.base_url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port))
        request = (
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
            f"Authorization: Bearer {user.access_token}\r\nUpload-Offset: 0\r\n"
            "Content-Type: application/offset+octet-stream\r\nContent-Length: 100\r\n\r\n"
        ).encode()
        sock.sendall(request + b"x" * 10)  # then nothing more
        _, closed = _closed_by_server([sock], time.monotonic() + 15)
        sock.close()
        assert closed == 1
        head = client.head(path, headers={"Tus-Resumable": "1.0.0"})
    assert head.status_code == 200
    assert head.headers["upload-offset"] == "10"


# -- item 8: hostile JSON ----------------------------------------------------


@pytest.mark.parametrize("route", ["/auth/register", "/auth/login", "/auth/refresh"])
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 5000, 400),
        (b'{"a":' * 2000, 400),
        (b'{"username": "someone", "password": "' + b"p" * 1_000_000 + b'"}', 413),
    ],
    ids=["deep-array", "deep-object", "1MB-password"],
)
def test_hostile_json_bodies_are_json_errors(live: Service, route: str, body: bytes, status: int) -> None:
    response = httpx.post(
        f"{live.base_url}{route}", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()["error"]) == {"code", "message"}
    assert "Traceback" not in (live.data_dir / "api.log").read_text()


# -- item 9: /metrics --------------------------------------------------------


def test_metrics_are_not_public(live: Service, service_factory: Factory) -> None:
    service = service_factory()  # no TUSD_PY_METRICS_TOKEN
    hidden = httpx.get(f"{service.base_url}/metrics")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    # The suite's shared service sets a token: only that bearer token gets the metrics.
    assert httpx.get(f"{live.base_url}/metrics").status_code == 401
    wrong = httpx.get(f"{live.base_url}/metrics", headers={"Authorization": "Bearer " + "x" * 40})
    assert wrong.status_code == 401
    scraped = httpx.get(f"{live.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    assert "tusd_http_requests_total" in scraped.text


# -- item 10: hosts ----------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "user@127.0.0.1", "127.0.0.1/path", "127.0.0.1?q=1"])
def test_a_foreign_host_is_refused(live: Service, user: User, host: str) -> None:
    response = httpx.post(
        f"{live.base_url}/files/",
        headers={**user.headers, "Host": host, "Tus-Resumable": "1.0.0", "Upload-Length": "1"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_host"
    assert response.headers["tus-resumable"] == "1.0.0"
    assert httpx.get(f"{live.base_url}/healthz", headers={"Host": host}).status_code == 400


def test_an_allowed_host_builds_the_location(live: Service, user: User) -> None:
    port = live.base_url.rsplit(":", 1)[1]
    response = httpx.post(
        f"{live.base_url}/files/",
        headers={**user.headers, "Host": f"localhost:{port}", "Tus-Resumable": "1.0.0", "Upload-Length": "1"},
    )
    assert response.status_code == 201
    assert response.headers["location"].startswith(f"http://localhost:{port}/files/")


def test_public_url_is_used_for_every_location(service_factory: Factory) -> None:
    service = service_factory(public_url="https://files.example.com", allowed_hosts="127.0.0.1")
    user = service.register()
    response = httpx.post(
        f"{service.base_url}/files/",
        headers={**user.headers, "Tus-Resumable": "1.0.0", "Upload-Length": "1"},
    )
    assert response.status_code == 201
    assert response.headers["location"].startswith("https://files.example.com/files/")


def test_forwarded_host_is_checked_behind_a_trusted_proxy(service_factory: Factory) -> None:
    service = service_factory(trust_proxy="true", allowed_hosts="127.0.0.1,files.example.com")
    user = service.register()
    headers = {**user.headers, "Tus-Resumable": "1.0.0", "Upload-Length": "1"}
    forged = httpx.post(f"{service.base_url}/files/", headers={**headers, "X-Forwarded-Host": "evil.example"})
    assert forged.status_code == 400
    allowed = httpx.post(
        f"{service.base_url}/files/",
        headers={**headers, "X-Forwarded-Host": "files.example.com", "X-Forwarded-Proto": "https"},
    )
    assert allowed.status_code == 201
    assert allowed.headers["location"].startswith("https://files.example.com/files/")


# -- item 11: response headers -----------------------------------------------


def test_token_responses_are_not_cached_and_pages_cannot_be_framed(live: Service, user: User) -> None:
    with live.client() as client:
        login = client.post("/auth/login", json=login_body(user))
        refreshed = client.post("/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})
        docs = client.get("/docs")
        missing = client.get("/no/such/thing")
    for response in (login, refreshed):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
    for response in (login, docs, missing):
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert "content-security-policy" not in login.headers


# -- sessions and accounts ---------------------------------------------------


def test_password_change_ends_every_other_session(live: Service) -> None:
    user = live.register()
    with live.client() as client:
        second = client.post("/auth/login", json=login_body(user)).json()
        common = {"old_password": user.password, "new_password": "password1234"}
        refused = client.post("/auth/password", json=common, headers=user.headers)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "common_password"
        wrong = {"old_password": "not the password", "new_password": "a brand new secret"}
        assert client.post("/auth/password", json=wrong, headers=user.headers).status_code == 403
        body = {"old_password": user.password, "new_password": "a brand new secret"}
        changed = client.post("/auth/password", json=body, headers=user.headers)
        assert changed.status_code == 200 and changed.headers["cache-control"] == "no-store"
        fresh = changed.json()
        for old in (user.access_token, second["access_token"]):
            assert client.get("/auth/me", headers={"Authorization": f"Bearer {old}"}).status_code == 401
        for old in (user.tokens["refresh_token"], second["refresh_token"]):
            assert client.post("/auth/refresh", json={"refresh_token": old}).status_code == 401
        assert (
            client.get("/auth/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}).status_code
            == 200
        )
        assert client.post("/auth/login", json=login_body(user)).status_code == 401
        assert client.post("/auth/login", json=login_body(user, "a brand new secret")).status_code == 200


def test_logout_all_ends_every_session(live: Service) -> None:
    user = live.register()
    with live.client() as client:
        second = client.post("/auth/login", json=login_body(user)).json()
        assert client.post("/auth/logout-all", headers=user.headers).status_code == 204
        for token in (user.access_token, second["access_token"]):
            assert client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert (
            client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
        )
        again = client.post("/auth/login", json=login_body(user))
        assert again.status_code == 200
        assert (
            client.get(
                "/auth/me", headers={"Authorization": f"Bearer {again.json()['access_token']}"}
            ).status_code
            == 200
        )


def test_account_removal_frees_the_name(live: Service) -> None:
    user = live.register()
    with live.client(user) as client:
        wrong = client.request("DELETE", "/auth/me", json={"password": "not the password"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
        assert client.request("DELETE", "/auth/me", json={"password": user.password}).status_code == 204
        assert client.get("/auth/me").status_code == 401
        refresh = {"refresh_token": user.tokens["refresh_token"]}
        assert client.post("/auth/refresh", json=refresh, headers={"Authorization": ""}).status_code == 401
    with live.client() as client:
        assert client.post("/auth/login", json=login_body(user)).status_code == 401
        again = client.post("/auth/register", json={"username": user.username, "password": PASSWORD})
        assert again.status_code == 201 and again.json()["id"] != user.id


@pytest.mark.parametrize("password", ["password123", "qwertyuiop", "PASSWORD123", "iloveyou1"])
def test_common_passwords_are_refused(live: Service, password: str) -> None:
    response = httpx.post(
        f"{live.base_url}/auth/register", json={"username": unique_name(), "password": password}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "common_password"


# -- item 12: file modes -----------------------------------------------------


def test_data_dir_files_are_private_and_results_are_attachments(service_factory: Factory) -> None:
    service = service_factory(workers=1)
    user = service.register()
    with service.client(user) as client:
        created = client.post(
            "/files/",
            content=b"hello",
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "5",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert created.status_code == 201
        task_id = created.headers["location"].rstrip("/").rsplit("/", 1)[1]
        deadline = time.monotonic() + 60
        while client.get(f"/tasks/{task_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the task did not complete"
            time.sleep(0.1)
        result = client.get(f"/tasks/{task_id}/result")
    assert result.status_code == 200 and result.content == b"HELLO"
    assert result.headers["content-disposition"].startswith("attachment;")
    assert result.headers["x-content-type-options"] == "nosniff"
    assert stat.S_IMODE(service.data_dir.stat().st_mode) == 0o700  # created 0755 by the harness
    found = set()
    for path in service.data_dir.rglob("*"):
        if path.suffix == ".log":
            continue  # written by the test harness, not by the service
        found.add(path.relative_to(service.data_dir).parts[0])
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert {"jwt.secret", "uploads", "results"} <= found

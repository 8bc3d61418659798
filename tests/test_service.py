"""Service routes: health, readiness, docs, JSON errors, CORS."""

from __future__ import annotations

import http.client
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import METRICS_TOKEN, Service, User, free_port, start_service, unique_name
from tusd_py.embedded_redis import RedisProcess


def test_health_and_readiness(live: Service) -> None:
    assert httpx.get(f"{live.base_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{live.base_url}/readyz").json() == {"status": "ready"}


def test_openapi_and_docs_are_served_locally(live: Service) -> None:
    spec = httpx.get(f"{live.base_url}/openapi.yaml")
    assert spec.status_code == 200
    assert yaml.safe_load(spec.text)["openapi"].startswith("3.1")
    page = httpx.get(f"{live.base_url}/docs")
    assert page.status_code == 200
    assert "/docs/static/swagger-ui-bundle.js" in page.text and "//cdn" not in page.text
    assert httpx.get(f"{live.base_url}/docs/static/swagger-ui-bundle.js").status_code == 200


def test_unknown_route_and_method_answer_json(live: Service) -> None:
    missing = httpx.get(f"{live.base_url}/no/such/thing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong_method = httpx.delete(f"{live.base_url}/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_metrics_count_requests_by_route_template(live: Service, user: User) -> None:
    with live.client(user) as client:
        client.get("/tasks/no-such-task")
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = metrics.text.splitlines()
    assert any(
        line.startswith("tusd_http_requests_total{")
        and 'route="/tasks/{task_id}"' in line
        and 'status="404"' in line
        for line in lines
    )
    assert not any("no-such-task" in line for line in lines)


@pytest.mark.parametrize("outage", ["stopped", "killed"])
def test_while_redis_is_unreachable_routes_answer_503_at_once_on_a_kept_connection(
    tmp_path: Path, outage: str
) -> None:
    """SIGSTOP (connections hang) or kill (connections are refused): either way every
    route that needs Redis answers 503 + Retry-After + JSON (423 on tus routes), within
    the client's socket timeout, on the same keep-alive connection."""
    server = RedisProcess(tmp_path / "redis", port=free_port(), persistent=False)
    service = start_service(tmp_path / "svc", server.start())
    try:
        user = service.register()
        assert server.process is not None
        if outage == "stopped":
            os.kill(server.process.pid, signal.SIGSTOP)
        else:
            server.process.kill()
            server.process.wait(10)
        conn = http.client.HTTPConnection("127.0.0.1", int(service.base_url.rsplit(":", 1)[1]), timeout=10)
        auth = user.headers
        login = json.dumps({"username": user.username, "password": user.password})
        json_body = {"Content-Type": "application/json"}
        needs_redis = [
            ("GET", "/auth/me", auth, None),
            ("GET", "/tasks", auth, None),
            ("GET", "/tasks/some-task", auth, None),
            ("GET", "/events", auth, None),
            ("POST", "/auth/login", json_body, login),
            (
                "POST",
                "/auth/register",
                json_body,
                json.dumps({"username": unique_name(), "password": "x" * 12}),
            ),
        ]
        contract = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())["paths"]
        documented = {"/tasks/some-task": "/tasks/{task_id}"}
        for method, path, _, _ in needs_redis:
            assert "503" in contract[documented.get(path, path)][method.lower()]["responses"], path
        socket_in_use = None
        for method, path, headers, body in needs_redis:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read())
            assert (method, path, response.status) == (method, path, 503), payload
            assert response.getheader("Retry-After") == "2"
            assert payload["error"]["code"] == "unavailable"
            assert not response.will_close
            socket_in_use = socket_in_use or conn.sock
            assert conn.sock is socket_in_use, "the keep-alive connection must stay usable"

        conn.request("HEAD", "/files/some-upload", headers={**auth, "Tus-Resumable": "1.0.0"})
        tus = conn.getresponse()
        tus.read()
        assert tus.status == 423 and tus.getheader("Retry-After") == "2"
        assert tus.getheader("Tus-Resumable") == "1.0.0"

        for path, status in [("/healthz", 200), ("/openapi.yaml", 200), ("/readyz", 503)]:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert (path, response.status) == (path, status)
        assert conn.sock is socket_in_use
        conn.close()
    finally:
        if outage == "stopped" and server.alive():
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGCONT)
        service.stop()
        server.stop()

"""Service routes: health, readiness, docs, JSON errors, CORS."""

from __future__ import annotations

import httpx
import yaml

from tests.conftest import METRICS_TOKEN
from tests.support import Service, User


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

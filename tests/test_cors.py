"""Browsers: CORS for the configured origins only."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.support import Service

ALLOWED = "https://app.example"


@pytest.fixture
def cors_service(service_factory: Callable[..., Service]) -> Service:
    return service_factory(cors_origins=f"{ALLOWED}, https://other.example")


def preflight(service: Service, origin: str, method: str = "PATCH") -> httpx.Response:
    return httpx.options(
        f"{service.base_url}/files/abc",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, tus-resumable, upload-offset, content-type",
        },
    )


def test_preflight_allows_tus_methods_and_headers(cors_service: Service) -> None:
    response = preflight(cors_service, ALLOWED)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"POST", "HEAD", "PATCH", "OPTIONS", "GET", "DELETE"} <= methods
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "tus-resumable", "upload-offset", "upload-metadata", "upload-checksum"):
        assert header in allowed_headers


def test_responses_expose_tus_headers_to_allowed_origin(cors_service: Service) -> None:
    response = httpx.get(f"{cors_service.base_url}/healthz", headers={"Origin": ALLOWED})
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "origin" in response.headers["vary"].lower()
    exposed = response.headers["access-control-expose-headers"].lower()
    for header in ("upload-offset", "location", "upload-length", "tus-resumable", "upload-expires"):
        assert header in exposed


def test_disallowed_origin_gets_no_cors_headers(cors_service: Service) -> None:
    refused = preflight(cors_service, "https://evil.example")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "cors_origin_not_allowed"
    assert not [h for h in refused.headers if h.lower().startswith("access-control-")]
    simple = httpx.get(f"{cors_service.base_url}/healthz", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200
    assert not [h for h in simple.headers if h.lower().startswith("access-control-")]
    assert "origin" in simple.headers["vary"].lower()


def test_no_origins_configured_means_no_cors(live: Service) -> None:
    response = httpx.get(f"{live.base_url}/healthz", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in response.headers

"""/docs in a real headless Chromium: Swagger UI 5 renders every operation of the contract."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.browser.conftest import run_scenario
from tests.support import Service

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
CONTRACT = Path(__file__).parents[2] / "openapi.yaml"

pytestmark = pytest.mark.usefixtures("browser_ready")


def contract_operations(document: bytes) -> list[str]:
    paths = yaml.safe_load(document)["paths"]
    return sorted(f"{method} {path}" for path, item in paths.items() for method in item if method in METHODS)


def assert_docs_render(base_url: str, expected: list[str]) -> None:
    """Shared with the wheel test: the page shows exactly the contract's operations."""
    page = run_scenario("docs.cjs", base_url)
    assert page["status"] == 200
    assert page["unableToRender"] is False
    assert sorted(page["operations"]) == expected
    assert page["title"] and "tusd-py" in page["title"]
    assert page["errors"] == []
    assert "frame-ancestors 'none'" in page["headers"]["content-security-policy"]
    assert page["headers"]["x-content-type-options"] == "nosniff"


def test_docs_renders_every_operation_of_the_contract(live: Service) -> None:
    expected = contract_operations(CONTRACT.read_bytes())
    assert len(expected) >= 20  # the contract has two dozen operations; a parse slip would show here
    assert_docs_render(live.base_url, expected)
    bundle = httpx.get(f"{live.base_url}/docs/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and bundle.headers["x-content-type-options"] == "nosniff"

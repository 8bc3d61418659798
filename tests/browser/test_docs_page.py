"""/docs in a real headless Chromium: Swagger UI 5 renders every operation of the contract."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.browser.driver import assert_docs_render, contract_operations
from tests.support import Service

CONTRACT = Path(__file__).parents[2] / "openapi.yaml"

pytestmark = pytest.mark.usefixtures("browser_ready")


def test_docs_renders_every_operation_of_the_contract(live: Service) -> None:
    expected = contract_operations(CONTRACT.read_bytes())
    assert len(expected) >= 20  # the contract has two dozen operations; a parse slip would show here
    assert_docs_render(live.base_url, expected)
    bundle = httpx.get(f"{live.base_url}/docs/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and bundle.headers["x-content-type-options"] == "nosniff"

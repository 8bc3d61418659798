"""``/`` without the console's npm assets: one line that says how to get them, no 500."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette

from tusd_py.console import console_routes


async def test_without_assets_the_page_says_how_to_get_them(tmp_path: Path) -> None:
    ui = tmp_path / "console_ui"
    ui.mkdir()
    app = Starlette(routes=console_routes(ui))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert "make console" in page.text and "needs npm" in page.text
        assert page.headers["x-content-type-options"] == "nosniff"
        missing = await client.get("/console/vendor/uppy.min.mjs")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

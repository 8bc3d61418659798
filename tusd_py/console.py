"""``GET /``: the web console, a client of the public API like any other.

Plain HTML, CSS and ES modules from ``tusd_py/console_ui`` (package data), with
Uppy's build copied from its npm package into ``console_ui/vendor`` by
``make console`` (gitignored; a wheel built afterwards ships it). Without those
assets ``/`` says in one line how to get them. The console's origin is the API's,
so it needs no CORS setting. Tokens live in the page's sessionStorage; no route
here is private to the console.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

UI_DIR = Path(str(files("tusd_py").joinpath("console_ui")))
VENDOR_FILES = ("uppy.min.mjs", "uppy.min.css")

# Uppy's Dashboard sets inline styles and shows blob:/data: thumbnails; scripts are ours only.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NO_ASSETS = (
    "<!doctype html><html lang=en><head><meta charset=utf-8><title>tusd-py</title></head><body>"
    "<p>The web console needs its Uppy assets: run <code>make console</code> (needs npm) and restart; "
    'the API works without them (see <a href="/docs">/docs</a>).</p></body></html>\n'
)


class _AssetFiles(StaticFiles):
    """StaticFiles with nosniff (and the CSP) on every answer; a plain 404 while the
    vendor folder does not exist (StaticFiles itself would raise)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._present():
            await JSONResponse({"error": {"code": "not_found", "message": "Not found."}}, 404)(
                scope, receive, send
            )
            return
        await super().__call__(scope, receive, send)

    def _present(self) -> bool:
        return Path(str(self.directory)).is_dir()  # one stat, as cheap as the lookup that follows

    def file_response(self, full_path: os.PathLike[str] | str, stat_result: os.stat_result, scope: Scope, status_code: int = 200) -> Response:  # fmt: skip
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def assets_installed(ui_dir: Path = UI_DIR) -> bool:
    return all((ui_dir / "vendor" / name).is_file() for name in VENDOR_FILES)


def console_routes(ui_dir: Path = UI_DIR) -> list[BaseRoute]:
    """``/`` and ``/console/*``; the vendor check runs per request, so ``make console``
    takes effect without a restart."""

    async def index(request: Request) -> Response:
        if not assets_installed(ui_dir):
            return HTMLResponse(NO_ASSETS, headers=SECURITY_HEADERS)
        return FileResponse(ui_dir / "index.html", media_type="text/html; charset=utf-8", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})  # fmt: skip

    def own_file(name: str, media_type: str) -> Route:
        async def serve(request: Request) -> Response:
            return FileResponse(ui_dir / name, media_type=media_type, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})  # fmt: skip

        return Route(f"/console/{name}", serve, methods=["GET"])

    return [
        Route("/", index, methods=["GET"]),
        own_file("app.js", "text/javascript; charset=utf-8"),
        own_file("console.css", "text/css; charset=utf-8"),
        Mount(
            "/console/vendor",
            app=_AssetFiles(directory=ui_dir / "vendor", check_dir=False),
            name="console-vendor",
        ),
    ]

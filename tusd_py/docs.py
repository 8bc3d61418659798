"""``/openapi.yaml`` and ``/docs``: the hand-written contract and Swagger UI 5.

The contract is package data (``tusd_py/openapi.yaml``, a symlink to the one
copy at the repo root that setuptools resolves into a real file in the wheel),
read through ``importlib.resources`` so that an installed wheel serves it from
any working directory. Swagger UI 5 (the first major version that renders
OpenAPI 3.1) comes from the openapi-ui-bundles package and is served by us: the
page works offline and loads nothing from a CDN. The page's one script is a
file of ours, so the Content-Security-Policy needs no inline scripts.
"""

from __future__ import annotations

import os
from importlib.resources import files

from openapi_ui_bundles.swagger_ui import static_path as swagger_ui_path
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# Swagger UI sets inline styles and shows data: images; everything else is ours.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

# Without <meta charset="utf-8"> the bundle is decoded as latin-1 and fails to parse.
_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>tusd-py API</title>
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""

_DOCS_INIT = (
    'window.ui = SwaggerUIBundle({url: "/openapi.yaml", dom_id: "#swagger-ui", deepLinking: true});\n'
)


class _NosniffFiles(StaticFiles):
    """Swagger UI's assets, each with ``X-Content-Type-Options: nosniff``."""

    def file_response(self, full_path: os.PathLike[str] | str, stat_result: os.stat_result, scope: Scope, status_code: int = 200) -> Response:  # fmt: skip
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def openapi_bytes() -> bytes:
    """The contract as shipped in the package (one source: the repo root's file)."""
    return files("tusd_py").joinpath("openapi.yaml").read_bytes()


def docs_routes() -> list[BaseRoute]:
    document = openapi_bytes()  # read once: it changes only with a new release

    async def openapi_document(request: Request) -> Response:
        return Response(
            document, media_type="application/yaml", headers={"X-Content-Type-Options": "nosniff"}
        )

    async def docs_page(request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE, headers=PAGE_HEADERS)

    async def docs_init(request: Request) -> Response:
        return Response(
            _DOCS_INIT, media_type="text/javascript", headers={"X-Content-Type-Options": "nosniff"}
        )

    return [
        Route("/openapi.yaml", openapi_document, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Route("/docs/init.js", docs_init, methods=["GET"]),
        Mount("/docs/static", app=_NosniffFiles(directory=str(swagger_ui_path)), name="docs-static"),
    ]

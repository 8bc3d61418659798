"""``/openapi.yaml`` and ``/docs``: the hand-written contract and Swagger UI.

Swagger UI's assets come from the swagger-ui-bundle package and are served by
us, so the docs page works offline and loads nothing from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

# In a checkout (and an editable install) the contract sits beside the packages;
# a plain install run from the checkout (the Dockerfile) finds it in the cwd.
_CANDIDATES = (Path(__file__).resolve().parent.parent / "openapi.yaml", Path.cwd() / "openapi.yaml")

_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>tusd-py API</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.yaml", dom_id: "#swagger-ui"});
  </script>
</body>
</html>
"""


def openapi_path() -> Path:
    return next((path for path in _CANDIDATES if path.is_file()), _CANDIDATES[0])


async def openapi_document(request: Request) -> Response:
    return FileResponse(openapi_path(), media_type="application/yaml")


async def docs_page(request: Request) -> Response:
    return HTMLResponse(_DOCS_PAGE)


def docs_routes() -> list[BaseRoute]:
    return [
        Route("/openapi.yaml", openapi_document, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Mount("/docs/static", app=StaticFiles(directory=str(swagger_ui_path)), name="docs-static"),
    ]

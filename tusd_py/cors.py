"""Starlette's CORS middleware, stricter with origins it does not allow.

Starlette still adds ``Access-Control-Expose-Headers`` for a disallowed origin
and answers its preflight with plain text. Here a disallowed origin gets no CORS
header at all (only ``Vary: Origin``, so caches keep answers apart) and a
refused preflight gets our usual JSON error.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from tusd_py.errors import error_response


def _add_vary_origin(headers: MutableHeaders) -> None:
    if "origin" not in headers.get("vary", "").lower():
        headers.append("Vary", "Origin")


class StrictCORSMiddleware(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or self.is_allowed_origin(origin):
            await super().__call__(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            response = error_response(403, "cors_origin_not_allowed", "this origin may not call the API")
            _add_vary_origin(response.headers)
            await response(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_vary_origin(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_vary)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = error_response(400, "cors_request_not_allowed", bytes(response.body).decode())
        for name, value in response.headers.items():
            if name.lower().startswith("access-control-"):
                refused.headers[name] = value
        return refused

"""Response headers every answer gets, whatever handler produced it.

* ``X-Content-Type-Options: nosniff`` everywhere: a result or an error body is
  never sniffed into HTML or script.
* On HTML pages (``/docs`` and the console): a Content-Security-Policy that
  loads only our own assets (no CDN is used), forbids framing
  (``frame-ancestors 'none'``, plus ``X-Frame-Options: DENY`` for old browsers)
  and plugins. Swagger UI's page has one inline bootstrap script and sets inline
  styles, hence ``'unsafe-inline'`` for those two.
* ``Referrer-Policy: no-referrer``: a URL with a ticket never leaks onwards.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, csp: str = CONTENT_SECURITY_POLICY) -> None:
        self.app = app
        self.csp = csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", self.csp)
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, add_headers)

"""Allowed hosts, and the one public URL every handed-out URL is built from.

The tus handler builds ``Location`` (and ``Upload-Concat`` on HEAD) from the
request's ``Host`` — or, behind a trusted proxy, ``X-Forwarded-Host`` /
``Forwarded`` — so a forged ``Host: evil.example`` would come back in a URL the
client stores and follows. :class:`HostGuard` runs before routing:

* a ``Host`` (and, with ``trust_proxy``, a forwarded host) that is not in
  ``allowed_hosts`` answers 400 as JSON (with ``Tus-Resumable`` on ``/files``);
* with a ``public_url``, the scope's scheme, host and root path are rewritten to
  it (and forwarded headers dropped), so every URL any handler builds uses it.

The tus package needs no change: it keeps reading the request as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

WILDCARD_ADDRESSES = {"", "0.0.0.0", "::", "[::]"}
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?\.?)+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?"
)


def default_allowed_hosts(listen_host: str) -> tuple[str, ...]:
    hosts = ["localhost", "127.0.0.1", "::1"]
    if listen_host not in WILDCARD_ADDRESSES and listen_host not in hosts:
        hosts.append(listen_host)
    return tuple(hosts)


def hostname(value: str) -> str | None:
    """The host part of a ``Host`` value, lower-cased without port or brackets; None if malformed."""
    value = value.strip()
    if not _HOST.fullmatch(value):
        return None
    if value.startswith("["):
        return value[1 : value.index("]")].lower()
    return value.rsplit(":", 1)[0].rstrip(".").lower() if ":" in value else value.rstrip(".").lower()


def _forwarded_hosts(headers: dict[bytes, bytes]) -> list[str]:
    found = []
    if b"x-forwarded-host" in headers:
        found += [part.strip() for part in headers[b"x-forwarded-host"].decode("latin-1").split(",")]
    if b"forwarded" in headers:
        for element in headers[b"forwarded"].decode("latin-1").split(","):
            for pair in element.split(";"):
                key, _, value = pair.strip().partition("=")
                if key.lower() == "host":
                    found.append(value.strip().strip('"'))
    return found


class HostGuard:
    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Iterable[str],
        public_url: str | None = None,
        trust_proxy: bool = False,
    ) -> None:
        self.app = app
        self.allowed = {host.strip("[]").lower() for host in allowed_hosts}
        self.trust_proxy = trust_proxy
        self.public: tuple[str, str, str] | None = None
        if public_url:
            parts = urlsplit(public_url)
            self.public = (parts.scheme, parts.netloc, parts.path.rstrip("/"))
            self.allowed.add((parts.hostname or "").lower())

    def _allowed(self, value: str) -> bool:
        name = hostname(value)
        if name is None:
            return False
        return name in self.allowed or any(
            entry.startswith("*.") and name.endswith(entry[1:]) for entry in self.allowed
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = [headers[b"host"].decode("latin-1")] if b"host" in headers else []
        if self.trust_proxy:
            given += _forwarded_hosts(headers)
        refused = next((host for host in given if not self._allowed(host)), None)
        if refused is not None:
            extra = {"Tus-Resumable": "1.0.0"} if scope.get("path", "").startswith("/files") else {}
            body = {"error": {"code": "invalid_host", "message": "this Host is not served here"}}
            await JSONResponse(body, status_code=400, headers=extra)(scope, receive, send)
            return
        if self.public is not None:
            scope = self._rewrite(scope)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> Scope:
        assert self.public is not None
        scheme, netloc, prefix = self.public
        dropped = {b"host", b"x-forwarded-host", b"x-forwarded-proto", b"forwarded"}
        headers = [(k, v) for k, v in scope["headers"] if k not in dropped]
        headers.append((b"host", netloc.encode("latin-1")))
        rewritten = {**scope, "scheme": scheme if scope["type"] == "http" else scheme.replace("http", "ws")}
        rewritten["headers"] = headers
        if prefix:
            rewritten["root_path"] = prefix + scope.get("root_path", "")
            rewritten["path"] = prefix + scope["path"]
        return rewritten

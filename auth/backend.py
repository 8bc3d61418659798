"""Bearer-token authentication for Starlette's ``AuthenticationMiddleware``.

No ``Authorization`` header means an anonymous request (routes decide whether
that is allowed); a header that is present but not a valid, unrevoked token
is refused with 401 before the route runs — before any upload byte is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection
from starlette.responses import Response

from auth.tokens import AccessClaims, InvalidToken, TokenService

ErrorRenderer = Callable[[int, str, str, Mapping[str, str]], Response]
"""``(status, code, message, headers) -> Response``: the application's JSON error renderer."""


class AuthenticatedUser(BaseUser):
    def __init__(self, claims: AccessClaims) -> None:
        self.claims = claims

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.claims.user_id

    @property
    def identity(self) -> str:
        return self.claims.user_id


class BearerBackend(AuthenticationBackend):
    """Verifies ``Authorization: Bearer``; :meth:`on_error` renders its refusals.

    ``render_error`` is the application's error renderer, so a refused token looks like
    every other error. ``path_headers`` maps a path prefix to headers its refusals carry
    (the app gives the tus mount its ``Tus-Resumable``), so this module knows no route.
    """

    def __init__(
        self,
        tokens: TokenService,
        *,
        render_error: ErrorRenderer,
        path_headers: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self._tokens = tokens
        self._render_error = render_error
        self._path_headers = dict(path_headers or {})

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is None or conn.scope.get("method") == "OPTIONS":
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("expected 'Authorization: Bearer <token>'")
        try:
            claims = await self._tokens.verify_access(token.strip())
        except InvalidToken:
            raise AuthenticationError("invalid or expired token") from None
        return AuthCredentials(["authenticated"]), AuthenticatedUser(claims)

    def on_error(self, conn: HTTPConnection, exc: AuthenticationError) -> Response:
        """``AuthenticationMiddleware(on_error=backend.on_error)``: 401 JSON, not Starlette's
        400 text."""
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        for prefix, extra in self._path_headers.items():
            if conn.url.path.startswith(prefix):
                headers.update(extra)
        return self._render_error(401, "unauthorized", str(exc), headers)

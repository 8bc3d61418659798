"""Bearer-token authentication for Starlette's ``AuthenticationMiddleware``.

No ``Authorization`` header means an anonymous request (routes decide whether
that is allowed); a header that is present but not a valid, unrevoked token
is refused with 401 before the route runs — before any upload byte is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from redis.exceptions import RedisError
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
UnavailableRenderer = Callable[[int, Mapping[str, str]], Response]
"""``(status, headers) -> Response``: the application's answer while its storage is down."""


class BackendUnavailable(AuthenticationError):
    """The token could not be checked: Redis (revocations, users) does not answer."""


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
    When Redis does not answer, ``render_unavailable`` answers 503 (the token cannot be
    checked; no request hangs and none answers 500), or 423 under ``locked_paths``: tus
    clients retry a 423 without restarting the upload, and restart on a 5xx.
    """

    def __init__(
        self,
        tokens: TokenService,
        *,
        render_error: ErrorRenderer,
        render_unavailable: UnavailableRenderer,
        path_headers: Mapping[str, Mapping[str, str]] | None = None,
        locked_paths: tuple[str, ...] = (),
    ) -> None:
        self._tokens = tokens
        self._render_error = render_error
        self._render_unavailable = render_unavailable
        self._path_headers = dict(path_headers or {})
        self._locked_paths = locked_paths

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
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(str(exc)) from None
        return AuthCredentials(["authenticated"]), AuthenticatedUser(claims)

    def on_error(self, conn: HTTPConnection, exc: AuthenticationError) -> Response:
        """``AuthenticationMiddleware(on_error=backend.on_error)``: 401 JSON, not Starlette's
        400 text (503/423 when the token could not be checked)."""
        path = conn.url.path
        extra = {
            k: v
            for prefix, hs in self._path_headers.items()
            if path.startswith(prefix)
            for k, v in hs.items()
        }
        if isinstance(exc, BackendUnavailable):
            locked = any(path.startswith(prefix) for prefix in self._locked_paths)
            return self._render_unavailable(423 if locked else 503, extra)
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"', **extra}
        return self._render_error(401, "unauthorized", str(exc), headers)

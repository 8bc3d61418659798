"""Bearer-token authentication for Starlette's ``AuthenticationMiddleware``.

No ``Authorization`` header means an anonymous request (routes decide whether
that is allowed); a header that is present but not a valid, unrevoked token
is refused with 401 before the route runs — before any upload byte is read.
"""

from __future__ import annotations

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from auth.tokens import AccessClaims, InvalidToken, TokenService


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
    def __init__(self, tokens: TokenService) -> None:
        self._tokens = tokens

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


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    if conn.url.path.startswith("/files"):
        headers["Tus-Resumable"] = "1.0.0"
    body = {"error": {"code": "unauthorized", "message": str(exc)}}
    return JSONResponse(body, status_code=401, headers=headers)

"""``/auth/*``: register, login, refresh, logout, me, and event-stream tickets."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.backend import AuthenticatedUser
from auth.passwords import PasswordService
from auth.ratelimit import LoginThrottle
from auth.tokens import InvalidToken, TokenPair, TokenService
from auth.users import UsernameTaken, UserStore

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,64}")
PASSWORD_LENGTH = (8, 1024)
MAX_BODY = 16 * 1024


class AuthError(HTTPException):
    """Rendered as ``{"error": {"code", "message"}}`` by the application."""

    def __init__(self, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(status_code, detail=message, headers=dict(headers or {}))
        self.code = code


def _unauthorized(message: str) -> AuthError:
    return AuthError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


async def _json_object(request: Request, fields: Mapping[str, type]) -> dict[str, Any]:
    """The body as an object with exactly ``fields``, each of the given type."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise AuthError(415, "unsupported_media_type", "send application/json")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise AuthError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise AuthError(422, "invalid_body", "the body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise AuthError(422, "invalid_body", f"unknown field(s): {', '.join(unknown)}")
    for name, kind in fields.items():
        if not isinstance(body.get(name), kind):
            raise AuthError(422, "invalid_body", f"'{name}' is required and must be a {kind.__name__}")
    return body


def _credentials(body: Mapping[str, Any]) -> tuple[str, str]:
    username, password = body["username"], body["password"]
    if not USERNAME.fullmatch(username):
        raise AuthError(422, "invalid_username", "username: 3-64 characters of A-Z a-z 0-9 _ . -")
    if not PASSWORD_LENGTH[0] <= len(password) <= PASSWORD_LENGTH[1]:
        raise AuthError(422, "invalid_password", "password: 8 to 1024 characters")
    return username, password


def _pair_body(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "token_type": "bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
    }


def _current_user(request: Request) -> AuthenticatedUser:
    if not isinstance(request.user, AuthenticatedUser):
        raise _unauthorized("authentication required")
    return request.user


class AuthEndpoints:
    """The auth routes, composed from the services they use."""

    def __init__(
        self,
        users: UserStore,
        passwords: PasswordService,
        tokens: TokenService,
        throttle: LoginThrottle,
    ) -> None:
        self.users = users
        self.passwords = passwords
        self.tokens = tokens
        self.throttle = throttle

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/register", self.register, methods=["POST"], max_body_size=MAX_BODY),
            Route("/auth/login", self.login, methods=["POST"], max_body_size=MAX_BODY),
            Route("/auth/refresh", self.refresh, methods=["POST"], max_body_size=MAX_BODY),
            Route("/auth/logout", self.logout, methods=["POST"], max_body_size=MAX_BODY),
            Route("/auth/me", self.me, methods=["GET"]),
            Route("/auth/ticket", self.ticket, methods=["POST"], max_body_size=MAX_BODY),
        ]

    async def register(self, request: Request) -> JSONResponse:
        username, password = _credentials(await _json_object(request, {"username": str, "password": str}))
        password_hash = await self.passwords.hash(password)
        try:
            user = await self.users.create(username, password_hash)
        except UsernameTaken:
            raise AuthError(409, "username_taken", "that username is taken") from None
        return JSONResponse({"id": user.id, "username": user.username}, status_code=201)

    async def login(self, request: Request) -> JSONResponse:
        body = await _json_object(request, {"username": str, "password": str})
        username, password = body["username"], body["password"]
        client_ip = request.client.host if request.client else "unknown"
        wait = await self.throttle.retry_after(username, client_ip)
        if wait is not None:
            raise AuthError(
                429,
                "too_many_attempts",
                "too many failed logins; retry later",
                {"Retry-After": str(wait)},
            )
        user = await self.users.get_by_username(username) if len(password) <= PASSWORD_LENGTH[1] else None
        if not await self.passwords.verify(user.password_hash if user else None, password) or user is None:
            await self.throttle.record_failure(username, client_ip)
            raise _unauthorized("wrong username or password")
        if self.passwords.needs_rehash(user.password_hash):
            await self.users.set_password_hash(user.id, await self.passwords.hash(password))
        return JSONResponse(_pair_body(await self.tokens.issue_pair(user.id)))

    async def refresh(self, request: Request) -> JSONResponse:
        body = await _json_object(request, {"refresh_token": str})
        try:
            pair = await self.tokens.rotate(body["refresh_token"])
        except InvalidToken as exc:
            raise _unauthorized(str(exc)) from None
        return JSONResponse(_pair_body(pair))

    async def logout(self, request: Request) -> Response:
        claims = _current_user(request).claims
        await self.tokens.revoke_family(claims.family)
        await self.tokens.revoke_access(claims)
        return Response(status_code=204)

    async def me(self, request: Request) -> JSONResponse:
        user = await self.users.get(_current_user(request).identity)
        if user is None:
            raise _unauthorized("user no longer exists")
        return JSONResponse({"id": user.id, "username": user.username})

    async def ticket(self, request: Request) -> JSONResponse:
        ticket, ttl = self.tokens.issue_ticket(_current_user(request).claims)
        return JSONResponse({"ticket": ticket, "expires_in": ttl})

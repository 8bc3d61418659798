"""``/auth/*``: register, login, refresh, logout(-all), me (and its removal), password
change, and event-stream tickets.

Every response that carries a token says ``Cache-Control: no-store`` (RFC 6749
section 5.1), so neither a browser nor a proxy keeps it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.backend import AuthenticatedUser
from auth.common_passwords import is_common
from auth.jsonbody import read_json
from auth.passwords import PasswordService
from auth.ratelimit import Throttle
from auth.tokens import InvalidToken, TokenPair, TokenService
from auth.users import User, UsernameTaken, UserStore

logger = logging.getLogger("tusd_py.auth")

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,64}")
PASSWORD_LENGTH = (8, 1024)
MAX_BODY = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

AccountRemoved = Callable[[str], Awaitable[None]]
"""Called with the user id after an account is removed, so the application can
cancel its tasks and delete its uploads, results and events (auth knows none)."""

UsageProvider = Callable[[str], Awaitable[Mapping[str, Any]]]
"""Given the user id, what the user keeps and may keep (``usage`` of ``GET /auth/me``);
the application knows uploads and tasks, auth does not."""


class AuthError(HTTPException):
    """Rendered as ``{"error": {"code", "message"}}`` by the application."""

    def __init__(self, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(status_code, detail=message, headers=dict(headers or {}))
        self.code = code


def _unauthorized(message: str) -> AuthError:
    return AuthError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


async def _json_object(request: Request, fields: Mapping[str, type]) -> dict[str, Any]:
    """The body as an object with exactly ``fields``, each of the given type."""
    body = await read_json(request, MAX_BODY)
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
    return username, _new_password(password)


def _new_password(password: str) -> str:
    if not PASSWORD_LENGTH[0] <= len(password) <= PASSWORD_LENGTH[1]:
        raise AuthError(422, "invalid_password", "password: 8 to 1024 characters")
    if is_common(password):
        raise AuthError(422, "common_password", "this password is among the most common ones; choose another")
    return password


def _too_many(wait: int, message: str) -> AuthError:
    return AuthError(429, "too_many_attempts", message, {"Retry-After": str(wait)})


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _tokens_response(pair: TokenPair) -> JSONResponse:
    return JSONResponse(_pair_body(pair), headers=NO_STORE)


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
        throttle: Throttle,
        on_account_removed: AccountRemoved | None = None,
        usage: UsageProvider | None = None,
    ) -> None:
        self.users = users
        self.passwords = passwords
        self.tokens = tokens
        self.throttle = throttle
        self.on_account_removed = on_account_removed
        self.usage = usage

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/register", self.register, methods=["POST"]),
            Route("/auth/login", self.login, methods=["POST"]),
            Route("/auth/refresh", self.refresh, methods=["POST"]),
            Route("/auth/logout", self.logout, methods=["POST"]),
            Route("/auth/logout-all", self.logout_all, methods=["POST"]),
            Route("/auth/me", self.me_resource, methods=["GET", "DELETE"]),
            Route("/auth/password", self.change_password, methods=["POST"]),
            Route("/auth/ticket", self.ticket, methods=["POST"]),
        ]

    async def register(self, request: Request) -> JSONResponse:
        username, password = _credentials(await _json_object(request, {"username": str, "password": str}))
        wait = await self.throttle.take_registration(_client_ip(request))
        if wait is not None:
            raise _too_many(wait, "too many registrations from this address; retry later")
        password_hash = await self.passwords.hash(password)
        try:
            user = await self.users.create(username, password_hash)
        except UsernameTaken:
            raise AuthError(409, "username_taken", "that username is taken") from None
        return JSONResponse({"id": user.id, "username": user.username}, status_code=201)

    async def login(self, request: Request) -> JSONResponse:
        body = await _json_object(request, {"username": str, "password": str})
        username, password = body["username"], body["password"]
        user = await self._check_password(request, username, password)
        if user is None:
            raise _unauthorized("wrong username or password")
        if self.passwords.needs_rehash(user.password_hash):
            await self.users.set_password_hash(user.id, await self.passwords.hash(password))
        return _tokens_response(await self.tokens.issue_pair(user.id))

    async def _check_password(self, request: Request, username: str, password: str) -> User | None:
        """The user when the password is right. The attempt is counted first, atomically
        (429 when a budget is spent), so concurrent guesses cannot pass the limit."""
        client_ip = _client_ip(request)
        wait = await self.throttle.take_login(username, client_ip)
        if wait is not None:
            raise _too_many(wait, "too many login attempts; retry later")
        user = await self.users.get_by_username(username) if len(password) <= PASSWORD_LENGTH[1] else None
        if not await self.passwords.verify(user.password_hash if user else None, password) or user is None:
            return None
        await self.throttle.login_succeeded(username, client_ip)
        return user

    async def refresh(self, request: Request) -> JSONResponse:
        body = await _json_object(request, {"refresh_token": str})
        try:
            pair = await self.tokens.rotate(body["refresh_token"])
        except InvalidToken as exc:
            raise _unauthorized(str(exc)) from None
        return _tokens_response(pair)

    async def logout(self, request: Request) -> Response:
        claims = _current_user(request).claims
        await self.tokens.revoke_family(claims.family)
        await self.tokens.revoke_access(claims)
        return Response(status_code=204)

    async def logout_all(self, request: Request) -> Response:
        """End every session of the caller, on every device (the session epoch moves on)."""
        await self.tokens.end_all_sessions(_current_user(request).identity)
        return Response(status_code=204)

    async def _reauthenticate(self, request: Request, password: str) -> User:
        user = await self.users.get(_current_user(request).identity)
        if user is None:
            raise _unauthorized("user no longer exists")
        if await self._check_password(request, user.username, password) is None:
            raise AuthError(403, "wrong_password", "the current password is wrong")
        return user

    async def change_password(self, request: Request) -> JSONResponse:
        """Set a new password; every session ends, and the caller's continues with the
        returned pair (a stolen session cannot outlive a password change)."""
        body = await _json_object(request, {"old_password": str, "new_password": str})
        new_password = _new_password(body["new_password"])
        user = await self._reauthenticate(request, body["old_password"])
        await self.users.set_password_hash(user.id, await self.passwords.hash(new_password))
        epoch = await self.tokens.end_all_sessions(user.id)
        return _tokens_response(await self.tokens.issue_pair(user.id, epoch=epoch))

    async def remove_account(self, request: Request) -> Response:
        """Close the account: sessions end at once (the user record is gone), the name is
        free again, and the application's hook removes everything the user kept."""
        body = await _json_object(request, {"password": str})
        user = await self._reauthenticate(request, body["password"])
        await self.users.delete(user)
        if self.on_account_removed is not None:
            await self.on_account_removed(user.id)
        return Response(status_code=204)

    async def me_resource(self, request: Request) -> Response:
        return await (self.remove_account(request) if request.method == "DELETE" else self.me(request))

    async def me(self, request: Request) -> JSONResponse:
        user = await self.users.get(_current_user(request).identity)
        if user is None:
            raise _unauthorized("user no longer exists")
        body: dict[str, Any] = {"id": user.id, "username": user.username}
        if self.usage is not None:
            body["usage"] = dict(await self.usage(user.id))
        return JSONResponse(body)

    async def ticket(self, request: Request) -> JSONResponse:
        ticket, ttl = self.tokens.issue_ticket(_current_user(request).claims)
        return JSONResponse({"ticket": ticket, "expires_in": ttl}, headers=NO_STORE)

"""Access tokens (JWT, HS256), rotating refresh tokens and SSE tickets.

* Access tokens are short-lived JWTs carrying ``sub``, ``iat``, ``exp``, ``jti``,
  ``iss``, ``aud`` and ``fam`` (the refresh-token family they came from). All of
  these are required on decode and the algorithm is fixed, never read from the
  token. Logout puts the ``jti`` on a deny list until it would expire anyway.
* Refresh tokens are opaque random strings stored only as SHA-256 hashes. Each
  use rotates them; presenting a rotated one again means it leaked, so the whole
  family is revoked, including its live access tokens.
* Tickets are one-minute JWTs with their own audience, good only for opening an
  event stream from a browser ``EventSource`` (which cannot send headers).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from redis.asyncio import Redis

from auth.config import AuthConfig
from auth.users import UserStore

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss", "aud"]
TICKET_AUDIENCE_SUFFIX = ":events"

# Atomically take a refresh token: on first use move it to a "used" marker;
# on a second use report the marker, so the caller can revoke the family.
_TAKE_REFRESH = """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], value, 'PX', ARGV[1])
  return {1, value}
end
local used = redis.call('GET', KEYS[2])
if used then return {2, used} end
return {0, ''}
"""


class InvalidToken(Exception):
    """Missing, malformed, forged, expired or revoked."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    jti: str
    family: str
    expires_at: int


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(self, redis: Redis, config: AuthConfig) -> None:
        self._redis = redis
        self._config = config
        self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})
        self._take_refresh = redis.register_script(_TAKE_REFRESH)

    # -- access tokens -----------------------------------------------------

    def _encode(self, claims: dict[str, Any], audience: str, ttl: int) -> str:
        now = int(time.time())
        payload = {
            **claims,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "iss": self._config.issuer,
            "aud": audience,
        }
        return self._jwt.encode(payload, self._config.secret, algorithm=ALGORITHM)

    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        try:
            return self._jwt.decode(
                token,
                self._config.secret,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=self._config.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None

    async def verify_access(self, token: str) -> AccessClaims:
        """Decode and check that neither the token, its family nor its user is gone."""
        claims = self._decode(token, self._config.audience)
        family = claims.get("fam")
        if not isinstance(family, str) or not isinstance(claims["sub"], str):
            raise InvalidToken("malformed claims")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(f"auth:revoked:{claims['jti']}")
            pipe.exists(f"auth:family-revoked:{family}")
            pipe.exists(UserStore.exists_key(claims["sub"]))
            revoked, family_revoked, user_exists = await pipe.execute()
        if revoked or family_revoked or not user_exists:
            raise InvalidToken("token revoked")
        return AccessClaims(claims["sub"], claims["jti"], family, int(claims["exp"]))

    async def revoke_access(self, claims: AccessClaims) -> None:
        ttl = max(1, claims.expires_at - int(time.time()) + 1)
        await self._redis.set(f"auth:revoked:{claims.jti}", "1", ex=ttl)

    # -- refresh tokens ----------------------------------------------------

    async def issue_pair(self, user_id: str, family: str | None = None) -> TokenPair:
        family = family or uuid.uuid4().hex
        refresh = secrets.token_urlsafe(32)
        await self._redis.set(
            f"auth:refresh:{_digest(refresh)}",
            f"{user_id}:{family}",
            ex=self._config.refresh_token_ttl,
        )
        access = self._encode(
            {"sub": user_id, "fam": family}, self._config.audience, self._config.access_token_ttl
        )
        return TokenPair(access, refresh, self._config.access_token_ttl)

    async def rotate(self, refresh_token: str) -> TokenPair:
        """Trade a refresh token for a new pair; a reused one revokes its family."""
        digest = _digest(refresh_token)
        status, value = await self._take_refresh(
            keys=[f"auth:refresh:{digest}", f"auth:refresh-used:{digest}"],
            args=[self._config.refresh_token_ttl * 1000],
        )
        if status == 0:
            raise InvalidToken("unknown refresh token")
        user_id, family = value.decode().split(":", 1)
        if status == 2:
            await self.revoke_family(family)
            raise InvalidToken("refresh token reused; its session has been revoked")
        if await self._redis.exists(f"auth:family-revoked:{family}"):
            raise InvalidToken("session revoked")
        if not await self._redis.exists(UserStore.exists_key(user_id)):
            raise InvalidToken("user no longer exists")
        return await self.issue_pair(user_id, family)

    async def revoke_family(self, family: str) -> None:
        await self._redis.set(f"auth:family-revoked:{family}", "1", ex=self._config.refresh_token_ttl)

    # -- event-stream tickets ----------------------------------------------

    def issue_ticket(self, claims: AccessClaims) -> tuple[str, int]:
        audience = self._config.audience + TICKET_AUDIENCE_SUFFIX
        ticket = self._encode(
            {"sub": claims.user_id, "fam": claims.family}, audience, self._config.ticket_ttl
        )
        return ticket, self._config.ticket_ttl

    async def verify_ticket(self, ticket: str) -> str | None:
        """The user id a ticket was issued to, or None when it is not valid (any more)."""
        try:
            claims = self._decode(ticket, self._config.audience + TICKET_AUDIENCE_SUFFIX)
        except InvalidToken:
            return None
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(f"auth:family-revoked:{claims.get('fam')}")
            pipe.exists(UserStore.exists_key(str(claims["sub"])))
            family_revoked, user_exists = await pipe.execute()
        return None if family_revoked or not user_exists else str(claims["sub"])

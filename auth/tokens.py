"""Access tokens (JWT, HS256), rotating refresh tokens and SSE tickets.

* Access tokens are short-lived JWTs carrying ``sub``, ``iat``, ``exp``, ``jti``,
  ``iss``, ``aud`` and ``fam`` (the refresh-token family they came from). All of
  these are required on decode and the algorithm is fixed, never read from the
  token. Logout puts the ``jti`` on a deny list until it would expire anyway.
* Refresh tokens are opaque random strings stored only as SHA-256 hashes. Each
  use rotates them; presenting a rotated one again means it leaked, so the whole
  family is revoked, including its live access tokens.
* Tickets are one-minute JWTs with their own audience, good only for opening an
  event stream from a browser ``EventSource`` (which cannot send headers). They
  stay reusable within that minute (EventSource reconnects with the same URL)
  and carry the ``jti`` and ``exp`` of the access token that minted them, so a
  stream opened with one ends with that session.
* Every user has a session epoch (``epoch`` in the user hash, carried as ``ep``
  in every token and refresh record). Bumping it ends every session at once
  (logout-all, password change) in the same round trip that checks the user.
"""

from __future__ import annotations

import functools
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
VERIFIED_TOKENS = 4096
"""Access tokens whose signature and claims this process has checked, remembered so that
a client's next requests skip the decode (HMAC and claim checks were about two thirds of
the token check's CPU in a PATCH, the rest its Redis pipeline). A remembered token is
still checked for expiry and against Redis (logout, revoked family, session epoch) on
every request."""

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
    epoch: int = 0


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
        # Only decodes that succeed are remembered (lru_cache keeps no exceptions).
        self._verified = functools.lru_cache(maxsize=VERIFIED_TOKENS)(self._decode_access)

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

    def _decode_access(self, token: str) -> AccessClaims:
        return _access_claims(self._decode(token, self._config.audience))

    async def verify_access(self, token: str) -> AccessClaims:
        """Decode (once per token and process, see :data:`VERIFIED_TOKENS`) and check that
        the token has not expired and that neither it, its family nor its user is gone."""
        claims = self._verified(token)
        if not await self.session_alive(claims):  # checks the expiry first
            raise InvalidToken("token revoked")
        return claims

    async def session_alive(self, claims: AccessClaims) -> bool:
        """Whether the session behind ``claims`` still stands, in one Redis round trip:
        not expired, not logged out, its family not revoked, its user still there
        with the same session epoch. Long-lived responses (event streams) call this
        periodically so that they end with their session."""
        if claims.expires_at <= time.time():
            return False
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(f"auth:revoked:{claims.jti}")
            pipe.exists(f"auth:family-revoked:{claims.family}")
            pipe.hmget(UserStore.exists_key(claims.user_id), ["username", "epoch"])
            revoked, family_revoked, (username, epoch) = await pipe.execute()
        return not (revoked or family_revoked or username is None or int(epoch or 0) != claims.epoch)

    async def _epoch(self, user_id: str) -> int | None:
        username, epoch = await self._redis.hmget(UserStore.exists_key(user_id), ["username", "epoch"])
        return None if username is None else int(epoch or 0)

    async def end_all_sessions(self, user_id: str) -> int:
        """Bump the user's session epoch: every token and refresh token issued before is void."""
        return int(await self._redis.hincrby(UserStore.exists_key(user_id), "epoch", 1))

    async def revoke_access(self, claims: AccessClaims) -> None:
        ttl = max(1, claims.expires_at - int(time.time()) + 1)
        await self._redis.set(f"auth:revoked:{claims.jti}", "1", ex=ttl)

    # -- refresh tokens ----------------------------------------------------

    async def issue_pair(
        self, user_id: str, family: str | None = None, epoch: int | None = None
    ) -> TokenPair:
        family = family or uuid.uuid4().hex
        if epoch is None:
            epoch = await self._epoch(user_id) or 0
        refresh = secrets.token_urlsafe(32)
        await self._redis.set(
            f"auth:refresh:{_digest(refresh)}",
            f"{user_id}:{family}:{epoch}",
            ex=self._config.refresh_token_ttl,
        )
        access = self._encode(
            {"sub": user_id, "fam": family, "ep": epoch}, self._config.audience, self._config.access_token_ttl
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
        user_id, family, *rest = value.decode().split(":")
        if status == 2:
            await self.revoke_family(family)
            raise InvalidToken("refresh token reused; its session has been revoked")
        if await self._redis.exists(f"auth:family-revoked:{family}"):
            raise InvalidToken("session revoked")
        epoch = await self._epoch(user_id)
        if epoch is None:
            raise InvalidToken("user no longer exists")
        if epoch != int(rest[0] if rest else 0):
            raise InvalidToken("session revoked")
        return await self.issue_pair(user_id, family, epoch)

    async def revoke_family(self, family: str) -> None:
        await self._redis.set(f"auth:family-revoked:{family}", "1", ex=self._config.refresh_token_ttl)

    # -- event-stream tickets ----------------------------------------------

    def issue_ticket(self, claims: AccessClaims) -> tuple[str, int]:
        audience = self._config.audience + TICKET_AUDIENCE_SUFFIX
        ttl = max(1, min(self._config.ticket_ttl, claims.expires_at - int(time.time())))
        minted_by = {"ajti": claims.jti, "aexp": claims.expires_at}
        ticket = self._encode(
            {"sub": claims.user_id, "fam": claims.family, "ep": claims.epoch, **minted_by}, audience, ttl
        )
        return ticket, ttl

    async def verify_ticket_claims(self, ticket: str) -> AccessClaims | None:
        """The claims of the access token that minted ``ticket``, or None when either is
        no longer valid. The ticket itself may be reused until it expires."""
        try:
            raw = self._decode(ticket, self._config.audience + TICKET_AUDIENCE_SUFFIX)
            claims = _access_claims({**raw, "jti": raw.get("ajti"), "exp": raw.get("aexp")})
        except InvalidToken:
            return None
        return claims if await self.session_alive(claims) else None


def _access_claims(claims: dict[str, Any]) -> AccessClaims:
    family, sub, jti, exp, epoch = (claims.get(k) for k in ("fam", "sub", "jti", "exp", "ep"))
    if not (isinstance(family, str) and isinstance(sub, str) and isinstance(jti, str)):
        raise InvalidToken("malformed claims")
    if not isinstance(exp, int) or not isinstance(epoch, int | None):
        raise InvalidToken("malformed claims")
    return AccessClaims(sub, jti, family, exp, epoch or 0)

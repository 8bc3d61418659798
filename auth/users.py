"""Users in Redis: ``auth:user:<id>`` hashes and a case-insensitive name index."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis


class UsernameTaken(Exception):
    """Another account already has this username (compared case-insensitively)."""


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password_hash: str


def _user_key(user_id: str) -> str:
    return f"auth:user:{user_id}"


def _name_key(username: str) -> str:
    return f"auth:username:{username.lower()}"


# Remove a user and free the name, but only if the name still points at this user.
_DELETE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return redis.call('DEL', KEYS[1])
"""


class UserStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._delete = redis.register_script(_DELETE)

    async def create(self, username: str, password_hash: str) -> User:
        user_id = uuid.uuid4().hex
        if not await self._redis.set(_name_key(username), user_id, nx=True):
            raise UsernameTaken(username)
        await self._redis.hset(
            _user_key(user_id),
            mapping={
                "username": username,
                "password_hash": password_hash,
                "created_at": str(time.time()),
            },
        )
        return User(user_id, username, password_hash)

    async def get(self, user_id: str) -> User | None:
        fields = await self._redis.hmget(_user_key(user_id), ["username", "password_hash"])
        if fields[0] is None or fields[1] is None:
            return None
        return User(user_id, fields[0].decode(), fields[1].decode())

    async def get_by_username(self, username: str) -> User | None:
        user_id = await self._redis.get(_name_key(username))
        return None if user_id is None else await self.get(user_id.decode())

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self._redis.hset(_user_key(user_id), "password_hash", password_hash)

    async def delete(self, user: User) -> bool:
        """Remove the account (its tokens stop working at once) and free its name."""
        return bool(await self._delete(keys=[_user_key(user.id), _name_key(user.username)], args=[user.id]))

    @staticmethod
    def exists_key(user_id: str) -> str:
        """The key whose existence means the user still exists (for token checks)."""
        return _user_key(user_id)

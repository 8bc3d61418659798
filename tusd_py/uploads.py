"""Where the application meets the tus handler: settings in, hooks out.

``tusd_py.tus`` knows nothing of users or tasks; this module builds its store,
locker and quota from :class:`Settings` and gives it the application's hooks:
who is calling (the authenticated user's id), whether the metadata names a
valid task (checked before any byte is accepted) and what to do with a
finished upload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request

from tusd_py.settings import Settings
from tusd_py.tus import (
    BackendUnavailable,
    FileStore,
    Hooks,
    RedisLocker,
    RedisQuota,
    TusError,
    TusHandler,
    UploadInfo,
)

__all__ = ["UploadInfo", "build_tus"]


def build_tus(
    settings: Settings,
    redis: Redis,
    *,
    on_complete: Callable[[UploadInfo], Awaitable[None]],
    check_metadata: Callable[[dict[str, str]], None],
    on_terminate: Callable[[UploadInfo], Awaitable[None]] | None = None,
) -> TusHandler:
    """The tus handler for the API; mount ``handler.routes`` and run
    ``handler.sweep_expired()`` now and then.

    ``check_metadata`` raises ``ValueError`` (answered 400 with its message) for
    metadata that cannot become a task. It is not applied to partial uploads:
    they never become tasks themselves (tus-js-client's parallel uploads send
    the metadata with the final upload only), the final upload is checked.
    ``on_complete`` runs once per finished upload; if it raises, the client's
    request answers 500 and its retry runs it again. ``on_terminate`` runs after
    the owner DELETEd an upload (its bytes are gone).
    """

    async def authenticate(request: Request) -> str | None:
        user = request.scope.get("user")  # set by Starlette's AuthenticationMiddleware
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return str(user.identity)

    async def pre_create(request: Request, info: UploadInfo) -> None:
        if info.partial:
            return
        try:
            check_metadata(info.metadata)
        except ValueError as error:
            raise TusError(400, "invalid_metadata", str(error)) from None

    async def post_finish(info: UploadInfo) -> None:
        try:
            await on_complete(info)
        except RedisError as error:  # the handler answers 423: the client retries the finish
            raise BackendUnavailable(str(error)) from error

    return TusHandler(
        FileStore(settings.uploads_dir),
        RedisLocker(redis),
        Hooks(
            authenticate=authenticate,
            pre_create=pre_create,
            post_finish=post_finish,
            post_terminate=on_terminate,
        ),
        max_size=settings.max_upload_size,
        expiry_seconds=settings.upload_expiry,
        trust_proxy=settings.trust_proxy,
        quota=RedisQuota(
            redis,
            max_uploads=settings.max_pending_uploads,
            max_bytes=settings.max_pending_bytes,
        ),
        idle_seconds=settings.upload_idle_timeout,
    )

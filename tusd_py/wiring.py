"""Every service the API uses, built once from :class:`Settings`, in one place.

:func:`build_services` makes the Redis client and everything that talks to it (users,
tokens, the login throttle, the task store and event log, ARQ's queue, SSE stream
slots, the upload locker and quota), the upload store and the tus hooks. The app
assembly (:func:`tusd_py.app.assemble_app`) hands them to the endpoints through
constructor arguments; a test may build a :class:`Services` of its own instead.

The tus hooks are where the application meets ``tusd_py.tus``, which knows nothing of
users or tasks: who is calling (the authenticated user's id), whether the metadata
names a valid task (checked before any byte is accepted), what a finished upload
becomes (a queued task) and what a deleted one undoes (its task is cancelled).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request

from auth.config import AuthConfig
from auth.passwords import PasswordService
from auth.ratelimit import Throttle
from auth.secret import load_or_create_secret
from auth.tokens import TokenService
from auth.users import UserStore
from processing.config import ProcessingConfig
from processing.events import EventLog, event_log_for
from processing.operations import validate_operation
from processing.records import filename_from_metadata
from processing.submit import cancel_task, submit_task
from processing.tasks import TaskStore
from processing.usage import StorageLedger
from tusd_py.events_api import StreamSlots
from tusd_py.processing_config import processing_config
from tusd_py.settings import Settings
from tusd_py.tus import (
    BackendUnavailable,
    FileStore,
    Hooks,
    Locker,
    Quota,
    RedisLocker,
    RedisQuota,
    TusError,
    UploadInfo,
)
from tusd_py.usage import LedgerStorageQuota

UNFINISHED_TASKS_RETRY_AFTER = 30
"""Seconds a client refused by the unfinished-tasks cap is asked to wait (tasks finish
in seconds to minutes; Uppy ignores the value and retries a 429 a few times anyway)."""

REDIS_TIMEOUT = 1.0
"""Seconds a Redis connect or command may take before it fails (RedisError -> 503/423).

A dead or stopped Redis must not hold requests: without a bound, a request waits on the
kernel's TCP timeouts. Blocking reads (SSE) use clients of their own with longer bounds.
"""


def with_timeouts(url: str) -> str:
    """``url`` with :data:`REDIS_TIMEOUT` as connect and socket timeouts, for clients that
    are built from a URL alone (the login throttle's ``limits`` storage)."""
    query = f"socket_timeout={REDIS_TIMEOUT}&socket_connect_timeout={REDIS_TIMEOUT}"
    return f"{url}{'&' if '?' in url else '?'}{query}"


@dataclass(frozen=True)
class Services:
    """What the API's endpoints are built from. ``redis`` is closed by the app's lifespan."""

    redis: Redis
    users: UserStore
    passwords: PasswordService
    tokens: TokenService
    throttle: Throttle
    tasks: TaskStore
    events: EventLog
    arq: ArqRedis
    slots: StreamSlots
    upload_store: FileStore
    locker: Locker
    quota: Quota
    ledger: StorageLedger
    storage: LedgerStorageQuota
    hooks: Hooks


def jwt_secret(settings: Settings) -> bytes:
    if settings.jwt_secret:
        return settings.jwt_secret.encode()
    return load_or_create_secret(settings.data_dir / "jwt.secret")


def node_name(settings: Settings, slot: int | None = None) -> str:
    """This API process's name among the nodes: stable across its restarts, so that its
    dead predecessor's locks are free at once. ``slot`` numbers the processes of one
    ``tusd-py api`` (:mod:`tusd_py.api_nodes`)."""
    name = f"{socket.gethostname()}:{settings.port}"
    return name if slot is None else f"{name}/{slot}"


def build_services(settings: Settings, node: str | None = None) -> Services:
    """Build every service from ``settings`` (which must name a Redis); ``node`` names this
    API process (default :func:`node_name`)."""
    config = processing_config(settings)  # raises without settings.redis_url
    redis = Redis.from_url(
        config.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )
    auth_config = AuthConfig(
        secret=jwt_secret(settings),
        access_token_ttl=settings.access_token_ttl,
        refresh_token_ttl=settings.refresh_token_ttl,
        argon2_profile=settings.argon2_profile,
        login_rate_limit=settings.login_rate_limit,
    )
    events = event_log_for(config, redis)  # the same log the worker publishes to
    tasks = TaskStore(redis, events)
    arq = ArqRedis(connection_pool=redis.connection_pool, default_queue_name=config.queue_name)
    upload_store = FileStore(settings.uploads_dir)
    ledger = StorageLedger(redis, limit=settings.storage_quota)
    return Services(
        redis=redis,
        users=UserStore(redis),
        passwords=PasswordService(settings.argon2_profile),
        tokens=TokenService(redis, auth_config),
        throttle=Throttle(
            with_timeouts(config.redis_url),
            settings.login_rate_limit,
            login_address_limit=settings.login_address_rate_limit,
            login_user_limit=settings.login_user_rate_limit,
            register_limit=settings.register_rate_limit,
        ),
        tasks=tasks,
        events=events,
        arq=arq,
        slots=StreamSlots(redis, settings.max_event_streams),
        upload_store=upload_store,
        locker=RedisLocker(redis, node=node or node_name(settings)),
        quota=RedisQuota(
            redis, max_uploads=settings.max_pending_uploads, max_bytes=settings.max_pending_bytes
        ),
        ledger=ledger,
        storage=LedgerStorageQuota(ledger),
        hooks=upload_hooks(
            config,
            tasks,
            events,
            arq,
            data_path=upload_store.data_path,
            max_unfinished_tasks=settings.max_unfinished_tasks,
        ),
    )


def upload_hooks(
    config: ProcessingConfig,
    tasks: TaskStore,
    events: EventLog,
    arq: ArqRedis,
    *,
    data_path: Callable[[str], Path],
    max_unfinished_tasks: int | None = None,
) -> Hooks:
    """The tus handler's hooks: uploads belong to the authenticated user, and become tasks.

    ``data_path`` is the upload store's own answer to where an upload's bytes are: the
    task carries it, so processing never re-derives the store's layout.

    ``pre_create`` answers 400 (with the reason) for metadata that cannot become a task;
    it is not applied to partial uploads: they never become tasks themselves
    (tus-js-client's parallel uploads send the metadata with the final upload only), the
    final upload is checked. It also answers 429 (``Retry-After``) when the user already
    has ``max_unfinished_tasks`` queued, processing or retrying tasks: checked at
    creation, never at completion, so an upload in flight always becomes its task.
    ``post_finish`` runs once per finished upload; if it raises,
    the client's request answers 423 (Redis away) or 500, and its retry runs it again (submitting is
    idempotent). ``post_terminate`` runs after the owner DELETEd an upload.
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
            validate_operation(info.metadata, config.enable_fault_operations)
        except ValueError as error:
            raise TusError(400, "invalid_metadata", str(error)) from None
        if max_unfinished_tasks is None:
            return
        try:
            unfinished = await tasks.unfinished_count(info.owner)
        except RedisError as error:
            raise BackendUnavailable(str(error)) from error
        if unfinished >= max_unfinished_tasks:
            raise TusError(
                429,
                "too_many_tasks",
                f"{unfinished} of your tasks are unfinished (TUSD_PY_MAX_UNFINISHED_TASKS is "
                f"{max_unfinished_tasks}): wait for some to finish or cancel some",
                {"Retry-After": str(UNFINISHED_TASKS_RETRY_AFTER)},
            )

    async def post_finish(upload: UploadInfo) -> None:
        try:
            await _submit(upload)
        except RedisError as error:  # the handler answers 423: the client retries the finish
            raise BackendUnavailable(str(error)) from error

    async def _submit(upload: UploadInfo) -> None:
        await submit_task(
            tasks,
            events,
            arq,
            task_id=upload.id,
            owner=upload.owner,
            filename=filename_from_metadata(upload.metadata),
            size=upload.length or 0,
            operation=validate_operation(upload.metadata, config.enable_fault_operations),
            max_attempts=config.max_tries,
            source=data_path(upload.id),
        )

    async def post_terminate(upload: UploadInfo) -> None:
        task = await tasks.get_for(upload.id, upload.owner)
        if task is not None and not task.status.is_final:
            await cancel_task(tasks, arq, task)

    return Hooks(
        authenticate=authenticate,
        pre_create=pre_create,
        post_finish=post_finish,
        post_terminate=post_terminate,
    )

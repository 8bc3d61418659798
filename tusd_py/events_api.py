"""Server-Sent Events: ``GET /events`` (all of the caller's tasks) and
``GET /tasks/{id}/events`` (one task, ending after its final event).

Each SSE event has ``id`` = the Redis stream entry id, ``event`` = the event name
(``task.queued``, ``task.progress``, ``task.retrying``, ``task.completed``,
``task.failed``, ``task.cancelled``) and ``data`` = the task as ``GET /tasks/{id}``
shows it at that moment (JSON). Events come from the user's bounded Redis stream, so
any API node delivers what any worker wrote.

Where a stream starts:

- ``Last-Event-ID`` header (what EventSource sends on reconnect) or ``last_event_id``
  query parameter: right after that event — the missed ones are replayed, as far back
  as the stream still reaches (``TUSD_PY_EVENT_LOG_SIZE`` events per user).
- otherwise ``/events`` starts with the next new event, and ``/tasks/{id}/events``
  replays the task's whole history still kept, so a late subscriber still sees the
  outcome and the stream still ends.

``/tasks/{id}/events`` for a task that has ended and has nothing left to send answers
204, which tells EventSource to stop reconnecting.

Auth: ``Authorization: Bearer`` or, for browsers (EventSource cannot send headers),
``?ticket=`` from ``POST /auth/ticket``. At most ``TUSD_PY_MAX_EVENT_STREAMS`` streams
per user at once (429 past it); the count lives in Redis as a sorted set of slots with
expiry times, renewed while a stream runs, so a crashed node frees its slots within
``SLOT_TTL`` seconds. A comment line is sent every ``PING`` seconds as keep-alive.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator

import anyio
from redis.asyncio import Redis
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auth.tokens import AccessClaims, TokenService
from processing.events import Event, EventLog, is_stream_id
from processing.tasks import KEY_PREFIX, EventName, Task, TaskStatus, TaskStore
from tusd_py.errors import ApiError

PING = 15
BLOCK_MS = 2_000  # also how often a stream checks that its session still stands
SESSION_CHECK = 2.0
SLOT_TTL = 45.0
SLOT_REFRESH = 15.0
FINAL_EVENTS = {
    TaskStatus.COMPLETED: EventName.COMPLETED,
    TaskStatus.FAILED: EventName.FAILED,
    TaskStatus.CANCELLED: EventName.CANCELLED,
}

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class StreamSlots:
    """Concurrent SSE streams per user, counted in Redis (``tusd:sse:<user>``)."""

    def __init__(self, redis: Redis, limit: int, ttl: float = SLOT_TTL) -> None:
        self.redis = redis
        self.limit = limit
        self.ttl_ms = int(ttl * 1000)
        self._acquire = redis.register_script(_ACQUIRE)

    @staticmethod
    def key(owner: str) -> str:
        return f"{KEY_PREFIX}sse:{owner}"

    async def acquire(self, owner: str) -> str | None:
        slot = secrets.token_hex(8)
        now = int(time.time() * 1000)
        ok = await self._acquire(
            keys=[self.key(owner)],
            args=[now, self.limit, now + self.ttl_ms, slot, self.ttl_ms],
        )
        return slot if int(ok) else None

    async def refresh(self, owner: str, slot: str) -> None:
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key(owner), {slot: now + self.ttl_ms}, xx=True)
            pipe.pexpire(self.key(owner), self.ttl_ms)
            await pipe.execute()

    async def release(self, owner: str, slot: str) -> None:
        await self.redis.zrem(self.key(owner), slot)


def _last_event_id(request: Request) -> str | None:
    """The header wins over the query parameter, but a malformed one of either is refused."""
    given = [request.headers.get("last-event-id"), request.query_params.get("last_event_id")]
    present = [value.strip() for value in given if value and value.strip()]
    if any(not is_stream_id(value) for value in present):
        raise ApiError(400, "Last-Event-ID is not an event id of this service")
    return present[0] if present else None


def _sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(event.data()), event=event.name.value, id=event.id)


def _final_event(task: Task, stream_id: str) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps(task.to_public()),
        event=FINAL_EVENTS[task.status].value,
        id=stream_id if stream_id != "0-0" else None,
    )


def _head() -> Response:
    """HEAD: the headers of a stream, without opening one (or taking a slot)."""
    return Response(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})


async def _single(event: ServerSentEvent) -> AsyncIterator[ServerSentEvent]:
    yield event


class EventEndpoints:
    """The SSE routes, composed from the services they use."""

    def __init__(self, tasks: TaskStore, events: EventLog, tokens: TokenService, slots: StreamSlots) -> None:
        self.tasks = tasks
        self.events = events
        self.tokens = tokens
        self.slots = slots

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/events", self.all_events, methods=["GET"]),
            Route("/tasks/{task_id}/events", self.task_events, methods=["GET"]),
        ]

    async def _identify(self, request: Request) -> AccessClaims:
        """The session a stream belongs to: the bearer token's, or the one that minted the ticket."""
        user = request.scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            return user.claims  # type: ignore[no-any-return]
        ticket = request.query_params.get("ticket")
        if ticket:
            claims = await self.tokens.verify_ticket_claims(ticket)
            if claims is not None:
                return claims
            raise ApiError(401, "invalid or expired ticket")
        raise ApiError(401, "authentication required")

    async def _open(self, owner: str) -> str:
        slot = await self.slots.acquire(owner)
        if slot is None:
            raise ApiError(
                429,
                f"at most {self.slots.limit} event streams per user at once",
                headers={"Retry-After": str(PING)},
            )
        return slot

    async def _follow(
        self,
        session: AccessClaims,
        slot: str,
        after: str,
        task_id: str | None = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """Replay after ``after``, then follow new events (of ``task_id`` only, if given) on
        a connection of its own; ends after the task's final event, or once the session
        that opened it ends (logout, revocation, expiry, account removal)."""
        owner = session.user_id
        client = self.events.dedicated_client(socket_timeout=BLOCK_MS / 1000 + 10)
        try:
            cursor = after
            renewed = checked = time.monotonic()
            while True:
                if time.monotonic() - checked >= SESSION_CHECK:
                    if not await self.tokens.session_alive(session):
                        return
                    checked = time.monotonic()
                batch = await self.events.read(owner, cursor, block_ms=BLOCK_MS, client=client)
                for event in batch:
                    cursor = event.id
                    if task_id is not None and event.task.id != task_id:
                        continue
                    yield _sse(event)
                    if task_id is not None and event.task.status.is_final:
                        return
                if time.monotonic() - renewed >= SLOT_REFRESH:
                    await self.slots.refresh(owner, slot)
                    renewed = time.monotonic()
                if not batch and task_id is not None and await self.tasks.get_for(task_id, owner) is None:
                    return  # the task was removed (retention): nothing more will come
        finally:
            with anyio.CancelScope(shield=True):
                await self.slots.release(owner, slot)
                await client.aclose(close_connection_pool=True)

    async def all_events(self, request: Request) -> Response:
        session = await self._identify(request)
        owner = session.user_id
        after = _last_event_id(request)
        if request.method == "HEAD":
            return _head()
        if after is None:
            after = await self.events.last_id(owner)
        slot = await self._open(owner)
        return EventSourceResponse(self._follow(session, slot, after), ping=PING)

    async def task_events(self, request: Request) -> Response:
        session = await self._identify(request)
        owner = session.user_id
        task = await self.tasks.get_for(request.path_params["task_id"], owner)
        if task is None:
            raise ApiError(404, "task not found")
        resume = _last_event_id(request)
        after = resume or "0-0"
        if request.method == "HEAD":
            return _head()
        if task.status.is_final:
            pending = [
                e
                for e in await self.events.read(owner, after, count=self.events.max_events)
                if e.task.id == task.id
            ]
            if not any(e.task.status.is_final for e in pending):
                if resume is not None:
                    return Response(status_code=204)  # seen it all: EventSource stops here
                # The outcome fell out of the bounded log: say it once, then end.
                outcome = _final_event(task, await self.events.last_id(owner))
                return EventSourceResponse(_single(outcome), ping=PING)
        slot = await self._open(owner)
        return EventSourceResponse(self._follow(session, slot, after, task.id), ping=PING)

"""Task events on Redis Streams: one bounded stream per user.

Events are appended by ``processing.tasks.TaskStore`` in the same Lua call as
the state change they describe (so no change goes unannounced and the order is the
order of the changes). Each stream entry holds ``event`` (its name) and a snapshot of
the task record; the entry id (``1700000000000-0``) is the SSE event id, which makes
``Last-Event-ID`` replay a plain ``XREAD`` from that id. Streams are trimmed with
``MAXLEN ~ max_events`` and expire ``ttl`` after their last event, so replay reaches
back at most that far.

Any API node can deliver any event: the worker writes, readers ``XREAD BLOCK`` on a
connection of their own (:meth:`EventLog.dedicated_client`) so that long-lived SSE
streams never starve the shared connection pool.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import ConnectionPool, Redis

from processing.config import ProcessingConfig
from processing.records import KEY_PREFIX, EventName, Task, text

STREAM_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


def stream_key(owner: str) -> str:
    return f"{KEY_PREFIX}events:{owner}"


def is_stream_id(value: str) -> bool:
    return bool(STREAM_ID_RE.match(value))


@dataclass(frozen=True)
class Event:
    id: str
    """The stream entry id, used as the SSE ``id``."""
    name: EventName
    task: Task

    def data(self) -> dict[str, Any]:
        """The SSE ``data``: the task as ``GET /tasks/{id}`` shows it at that moment."""
        return self.task.to_public()


def _parse(entry_id: Any, fields: Mapping[Any, Any]) -> Event | None:
    decoded = {text(k): text(v) for k, v in fields.items()}
    try:
        name = EventName(decoded.pop("event"))
        return Event(text(entry_id), name, Task.from_fields(decoded))
    except (KeyError, ValueError):
        return None  # not an entry we wrote; never break a reader over it


class EventLog:
    """Per-user event streams: their names, bounds, and reads."""

    def __init__(self, redis: Redis, *, max_events: int = 1000, ttl_seconds: int = 7 * 86400) -> None:
        self.redis = redis
        self.max_events = max_events
        self.ttl_ms = ttl_seconds * 1000

    def stream_key(self, owner: str) -> str:
        return stream_key(owner)

    async def last_id(self, owner: str, client: Redis | None = None) -> str:
        """Id of the newest event of ``owner`` ("0-0" if none): where "from now on" starts."""
        entries = await (client or self.redis).xrevrange(stream_key(owner), "+", "-", count=1)
        return text(entries[0][0]) if entries else "0-0"

    async def read(
        self,
        owner: str,
        after: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
        client: Redis | None = None,
    ) -> list[Event]:
        """Events of ``owner`` after id ``after`` (oldest first), waiting up to ``block_ms``
        for one when there are none. Pass a dedicated ``client`` when blocking."""
        reply = await (client or self.redis).xread({stream_key(owner): after}, count=count, block=block_ms)
        events: list[Event] = []
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                event = _parse(entry_id, fields)
                if event is not None:
                    events.append(event)
        return events

    def dedicated_client(self, socket_timeout: float | None = None) -> Redis:
        """A client with a one-connection pool of its own, for blocking reads.

        It copies the shared pool's connection settings (host, socket path, password,
        database ...). ``socket_timeout`` must exceed the longest ``block_ms`` used.
        Close it with ``await client.aclose(close_connection_pool=True)``.
        """
        base = self.redis.connection_pool
        kwargs = dict(base.connection_kwargs)
        kwargs["socket_timeout"] = socket_timeout
        pool = ConnectionPool(connection_class=base.connection_class, max_connections=1, **kwargs)
        return Redis(connection_pool=pool)


def event_log_for(config: ProcessingConfig, redis: Redis) -> EventLog:
    """The EventLog workers publish to; the API builds its own with this same call, so
    both agree on the bounds without the API importing the worker."""
    return EventLog(redis, max_events=config.event_log_size, ttl_seconds=config.result_retention)

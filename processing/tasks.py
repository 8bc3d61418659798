"""The task store on Redis (the record itself is :mod:`processing.records`).

A task is a Redis hash ``tusd:task:<id>``; every change of state goes through one
Lua script that checks the current state (and the try it belongs to), writes the
change and appends the matching event to the owner's event stream, all in one
atomic step. So a cancel racing a completion ends in exactly one final state, and
the event stream is in the same order as the state changes.

Other keys: ``tusd:tasks:by-owner:<owner>`` (a sorted set used in lexicographic
order, members ``<created ms, 13 digits>:<id>``: newest first, total order, a stable
cursor), ``tusd:tasks:active`` (unfinished tasks by creation time, for the
reconciler), ``tusd:tasks:active-by-owner:<owner>`` (the same per owner, for the
unfinished-tasks cap) and ``tusd:tasks:finished`` (finished tasks by finish time, for
retention).

Round trips of one small task, from the finish hook to ``task.completed`` (counted in
ARQ 0.28's source and ours; a task that ends within 0.3 s writes no progress, and its
lease never beats):

API, ``submit_task``:
 1. ``TaskStore.create`` (Lua: record, indexes, task.queued)
 2. ``ArqRedis.enqueue_job``: WATCH job key
 3. EXISTS job and result keys
 4. MULTI PSETEX ZADD EXEC
 5. PUBLISH on the workers' doorbell (:mod:`processing.wake`)
Worker:
 6. the claim (``EagerWorker._claim_free_slots``, one script for all free slots: the queue
    read and the first due jobs that run nowhere, each one's in-progress key set), which
    ARQ does as ZRANGEBYSCORE and then WATCH, EXISTS, ZSCORE and MULTI PSETEX EXEC per
    job; after a freed slot or a ring it runs at once, and ARQ's regular poll (every
    ``poll_delay``) adds its own ZRANGEBYSCORE first
 7. ``run_job``: MULTI GET job, INCR/EXPIRE try counter, ZREM abort EXEC
 8. :meth:`TaskStore.begin_try` (Lua: shorten the in-progress key, read the task, check
    the budget, -> processing, task.progress)
 9. the quota charge of the result (:meth:`processing.usage.StorageLedger.charge_result`,
    Lua, O(1)); the child has renamed the result into place and reported its size over
    its pipe, so no file-system call of the worker comes between 8 and 9
10. :meth:`TaskStore.complete` (Lua: -> completed, task.completed)

After ``task.completed``: ARQ's ``finish_job`` (MULTI ... EXEC), and per regular poll
its abort-set pipeline (ZRANGE, ZREMRANGEBYSCORE). 1, 5, 6 and 8-10 are ours; ARQ's 2-4
and 7 go through its public API, which offers no batching of them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from processing.events import EventLog, stream_key
from processing.records import (  # re-exported: the API reads the vocabulary from here too
    ACTIVE_KEY,
    FINAL_STATUSES,
    FINISHED_KEY,
    KEY_PREFIX,
    MAX_ATTEMPTS_LIMIT,
    MAX_FILENAME_LENGTH,
    TASK_ID_RE,
    UNFINISHED_STATUSES,
    EventName,
    Task,
    TaskStatus,
    clean_filename,
    filename_from_metadata,
    is_task_id,
    now_ms,
    owner_active_key,
    owner_index_key,
    rfc3339,
    task_key,
    text,
)

__all__ = [
    "ACTIVE_KEY",
    "FINAL_STATUSES",
    "FINISHED_KEY",
    "KEY_PREFIX",
    "MAX_ATTEMPTS_LIMIT",
    "MAX_FILENAME_LENGTH",
    "TASK_ID_RE",
    "UNFINISHED_STATUSES",
    "EventName",
    "Page",
    "Task",
    "TaskStatus",
    "TaskStore",
    "TryStart",
    "clean_filename",
    "decode_cursor",
    "encode_cursor",
    "filename_from_metadata",
    "is_task_id",
    "now_ms",
    "owner_active_key",
    "owner_index_key",
    "rfc3339",
    "task_key",
    "text",
]


def _pairs_to_dict(flat: list[Any]) -> dict[str, str]:
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


_MEMBER_RE = re.compile(r"^\d{13}:[A-Za-z0-9_-]{1,128}$")


def decode_cursor(cursor: str) -> str:
    """The index member a cursor stands for; ``ValueError`` if it is not one of ours."""
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("invalid cursor") from None
    if not _MEMBER_RE.match(member):
        raise ValueError("invalid cursor")
    return member


# Create unless it exists; index it; publish task.queued. Returns {created, snapshot, id}.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGETALL', KEYS[1]), ''}
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[3])
local snapshot = redis.call('HGETALL', KEYS[1])
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'event', ARGV[4], unpack(snapshot))
redis.call('PEXPIRE', KEYS[4], ARGV[6])
return {1, snapshot, id}
"""

# Guarded transition: only from one of the allowed states (and, if given, only for the
# try that is current); writes the changes, moves the task between the active and the
# finished sets when it ends, and appends the event. Returns {1, snapshot, id} or
# {0, current status or ''}.
_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0, ''} end
local allowed = false
for s in string.gmatch(ARGV[2], '%S+') do
  if s == status then allowed = true end
end
if not allowed then return {0, status} end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[3] then
  return {0, status}
end
if #ARGV >= 8 then
  local fields = {}
  for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[5])
  redis.call('ZREM', KEYS[5], ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
end
local snapshot = redis.call('HGETALL', KEYS[1])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'event', ARGV[1], unpack(snapshot))
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {1, snapshot, id}
"""

# A worker's first call for a try, folded into one round trip (ARQ's job lock, the task
# read and the start): shorten ARQ's in-progress key to the lease's TTL; count ARQ's start
# again (KEYS[3], only for a job that gave it back while it waited for a try slot); read the task;
# refuse a missing one ({0}) or a finished one ({2, snapshot}); refuse one whose budget
# is spent ({3, snapshot}: failed tries >= max_attempts, or more than ARGV[4] starts cut
# short by a dying worker); else start try ARGV[1] (-> processing, error noted if the
# previous try was interrupted) and publish task.progress: {1, snapshot, id}. The event
# stream's key is derived from the record's owner (KEY_PREFIX .. 'events:' .. owner, as
# events.stream_key does): a key not passed in KEYS, which a single Redis (the only
# deployment ARQ supports) allows.
_BEGIN_TRY = """
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if KEYS[3] then redis.call('INCR', KEYS[3]) end
local raw = redis.call('HGETALL', KEYS[1])
if #raw == 0 then return {0} end
local f = {}
for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
local status = f['status']
if status == 'completed' or status == 'failed' or status == 'cancelled' then return {2, raw} end
local try = tonumber(ARGV[1])
local failures = tonumber(f['failures']) or 0
local attempts = tonumber(f['attempts']) or 0
if failures >= tonumber(f['max_attempts']) or try - 1 - failures > tonumber(ARGV[4]) then
  return {3, raw}
end
local err = f['error'] or ''
if status == 'processing' and attempts < try then err = string.format(ARGV[5], attempts) end
redis.call('HSET', KEYS[1], 'status', 'processing', 'attempts', ARGV[1], 'progress_bytes', '0',
  'started_ms', ARGV[2], 'error', err)
local snapshot = redis.call('HGETALL', KEYS[1])
local stream = ARGV[6] .. f['owner']
local id = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[7], '*', 'event', ARGV[9], unpack(snapshot))
redis.call('PEXPIRE', stream, ARGV[8])
return {1, snapshot, id}
"""

# Forget a finished task (retention). Refuses an unfinished one.
_DELETE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status and status ~= 'completed' and status ~= 'failed' and status ~= 'cancelled' then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
"""


INTERRUPTED_FORMAT = "try %d interrupted: its worker stopped"
"""The error a task carries when its previous try's worker died (``%d``: that try)."""


@dataclass(frozen=True)
class TryStart:
    """What :meth:`TaskStore.begin_try` found: ``task`` is None when it is gone; else
    it is the task after the start (``started``), or as found when it is finished or
    its budget is spent (``exhausted``), unchanged."""

    task: Task | None
    started: bool
    exhausted: bool


@dataclass(frozen=True)
class Page:
    tasks: list[Task]
    next_cursor: str | None


class TaskStore:
    """Task records on Redis. Every state change is atomic and publishes its event.

    ``redis`` may decode responses or not. ``events`` is the :class:`EventLog` whose
    per-owner streams receive the events (its size bound and TTL apply).
    """

    SCAN_BATCH = 100
    SCAN_BUDGET = 1000
    """Index entries one filtered listing examines at most before returning a page
    (possibly short, with a cursor) — a filter never turns into a full scan."""

    def __init__(self, redis: Redis, events: EventLog) -> None:
        self.redis = redis
        self.events = events
        self._create = redis.register_script(_CREATE)
        self._transition = redis.register_script(_TRANSITION)
        self._delete = redis.register_script(_DELETE)
        self._begin_try = redis.register_script(_BEGIN_TRY)

    async def create(self, task: Task) -> tuple[Task, bool]:
        """Store ``task`` and publish ``task.queued`` — unless a task with its id exists,
        which is returned unchanged. Returns ``(task, created)``."""
        flat: list[str] = []
        for key, value in task.to_fields().items():
            flat += [key, value]
        created, snapshot, _ = await self._create(
            keys=[
                task_key(task.id),
                owner_index_key(task.owner),
                ACTIVE_KEY,
                self.events.stream_key(task.owner),
                owner_active_key(task.owner),
            ],
            args=[
                task.index_member,
                task.created_ms,
                task.id,
                EventName.QUEUED.value,
                self.events.max_events,
                self.events.ttl_ms,
                *flat,
            ],
        )
        return Task.from_fields(_pairs_to_dict(snapshot)), bool(int(created))

    async def get(self, task_id: str) -> Task | None:
        if not is_task_id(task_id):
            return None
        raw = await self.redis.hgetall(task_key(task_id))  # type: ignore[misc]
        return Task.from_fields(raw) if raw else None

    async def get_for(self, task_id: str, owner: str) -> Task | None:
        """The task if it exists and belongs to ``owner``; else None (the same answer)."""
        task = await self.get(task_id)
        return task if task is not None and task.owner == owner else None

    async def transition(
        self,
        task: Task,
        event: EventName,
        *,
        allowed: Iterable[TaskStatus],
        attempt: int | None = None,
        **changes: Any,
    ) -> Task | None:
        """Apply ``changes`` (Task field names) if the task is in one of ``allowed`` states
        (and its current try is ``attempt``, when given), and publish ``event``.

        Returns the task after the change, or None when the guard refused (state moved
        on, another try took over, or the task is gone).
        """
        updated = replace(task, **changes)
        new_fields = updated.to_fields()
        flat: list[str] = []
        for key in changes:
            flat += [key, new_fields[key]]
        finished = ""
        if "status" in changes and TaskStatus(changes["status"]).is_final:
            finished = str(updated.finished_ms or now_ms())
        result = await self._transition(
            keys=[
                task_key(task.id),
                self.events.stream_key(task.owner),
                ACTIVE_KEY,
                FINISHED_KEY,
                owner_active_key(task.owner),
            ],
            args=[
                event.value,
                " ".join(TaskStatus(s).value for s in allowed),
                "" if attempt is None else str(attempt),
                finished,
                task.id,
                self.events.max_events,
                self.events.ttl_ms,
                *flat,
            ],
        )
        if not int(result[0]):
            return None
        return Task.from_fields(_pairs_to_dict(result[1]))

    # The lifecycle, spelled out. Each is one guarded transition.

    async def start_try(self, task: Task, attempt: int, error: str | None) -> Task | None:
        """A worker starts try ``attempt``: any unfinished state -> processing."""
        return await self.transition(
            task,
            EventName.PROGRESS,
            allowed=UNFINISHED_STATUSES,
            status=TaskStatus.PROCESSING,
            attempts=attempt,
            progress_bytes=0,
            started_ms=now_ms(),
            error=error,
        )

    async def begin_try(
        self,
        task_id: str,
        attempt: int,
        *,
        job_lock: str,
        lock_ms: int,
        max_interruptions: int,
        recount: str | None = None,
    ) -> TryStart:
        """A worker's first call for try ``attempt`` of ``task_id``, in one round trip:
        shorten ARQ's in-progress key ``job_lock`` to ``lock_ms``, read the task and, if
        it is unfinished and its budget allows another try, start it (-> processing,
        task.progress). ``max_interruptions`` bounds starts cut short by a dying worker
        (``attempt - 1 - failures``); failed tries are bounded by the task's
        ``max_attempts``. ``recount``: ARQ's start counter of a job that gave its start
        back while it waited for a try slot (:mod:`processing.slots`), counted again
        here. See :class:`TryStart` for the outcomes."""
        reply = await self._begin_try(
            keys=[task_key(task_id), job_lock, *([recount] if recount else [])],
            args=[
                attempt,
                now_ms(),
                lock_ms,
                max_interruptions,
                INTERRUPTED_FORMAT,
                stream_key(""),
                self.events.max_events,
                self.events.ttl_ms,
                EventName.PROGRESS.value,
            ],
        )
        code = int(reply[0])
        task = Task.from_fields(_pairs_to_dict(reply[1])) if code else None
        return TryStart(task, code == 1, code == 3)

    async def report_progress(self, task: Task, attempt: int, done: int) -> Task | None:
        return await self.transition(
            task,
            EventName.PROGRESS,
            allowed=[TaskStatus.PROCESSING],
            attempt=attempt,
            progress_bytes=done,
        )

    async def complete(self, task: Task, attempt: int) -> Task | None:
        return await self.transition(
            task,
            EventName.COMPLETED,
            allowed=[TaskStatus.PROCESSING],
            attempt=attempt,
            status=TaskStatus.COMPLETED,
            progress_bytes=task.size,
            error=None,
            finished_ms=now_ms(),
        )

    async def retry_later(
        self, task: Task, attempt: int, error: str, failures: int | None = None
    ) -> Task | None:
        """processing -> retrying; ``failures`` is the task's failed-try count after this one."""
        return await self.transition(
            task,
            EventName.RETRYING,
            allowed=[TaskStatus.PROCESSING],
            attempt=attempt,
            status=TaskStatus.RETRYING,
            error=error,
            failures=task.failures + 1 if failures is None else failures,
        )

    async def fail(self, task: Task, error: str, attempt: int | None = None) -> Task | None:
        return await self.transition(
            task,
            EventName.FAILED,
            allowed=UNFINISHED_STATUSES,
            attempt=attempt,
            status=TaskStatus.FAILED,
            error=error,
            finished_ms=now_ms(),
        )

    async def requeue(self, task: Task, attempt: int) -> Task | None:
        """A stopping worker gives its try back: processing -> queued."""
        return await self.transition(
            task,
            EventName.QUEUED,
            allowed=[TaskStatus.PROCESSING],
            attempt=attempt,
            status=TaskStatus.QUEUED,
            progress_bytes=0,
        )

    async def cancel(self, task: Task) -> Task | None:
        """Any unfinished state -> cancelled; None if it already ended."""
        return await self.transition(
            task,
            EventName.CANCELLED,
            allowed=UNFINISHED_STATUSES,
            status=TaskStatus.CANCELLED,
            finished_ms=now_ms(),
        )

    async def list_for(
        self,
        owner: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: TaskStatus | None = None,
    ) -> Page:
        """``owner``'s tasks, newest first. ``cursor`` comes from a previous page's
        ``next_cursor`` (``ValueError`` if it is not valid)."""
        key = owner_index_key(owner)
        start = "(" + decode_cursor(cursor) if cursor else "+"
        batch = limit + 1 if status is None else self.SCAN_BATCH
        found: list[Task] = []
        last_member = ""
        examined = 0
        while True:
            members = [text(m) for m in await self.redis.zrevrangebylex(key, start, "-", 0, batch)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.hgetall(task_key(member.split(":", 1)[1]))
                records = await pipe.execute() if members else []
            for member, raw in zip(members, records, strict=True):
                if len(found) == limit:  # a page is full and something follows it
                    return Page(found, encode_cursor(last_member))
                examined += 1
                last_member = member
                if not raw:
                    continue  # deleted under our feet
                task = Task.from_fields(raw)
                if task.owner == owner and (status is None or task.status is status):
                    found.append(task)
            if len(members) < batch:
                return Page(found, None)
            if examined >= self.SCAN_BUDGET:
                return Page(found, encode_cursor(last_member))
            start = "(" + members[-1]

    async def delete(self, task: Task) -> bool:
        """Forget a finished task (retention); False if it is not finished."""
        result = await self._delete(
            keys=[
                task_key(task.id),
                owner_index_key(task.owner),
                ACTIVE_KEY,
                FINISHED_KEY,
                owner_active_key(task.owner),
            ],
            args=[task.id, task.index_member],
        )
        return bool(int(result))

    async def unfinished_count(self, owner: str) -> int:
        """``owner``'s queued, processing and retrying tasks (one ``ZCARD``)."""
        return int(await self.redis.zcard(owner_active_key(owner)))

    async def ids_of(self, owner: str) -> list[str]:
        """Every task id of ``owner`` (account removal)."""
        members = await self.redis.zrange(owner_index_key(owner), 0, -1)
        return [text(member).split(":", 1)[1] for member in members]

    async def finished_before(self, cutoff_ms: int, limit: int = 200) -> list[str]:
        ids = await self.redis.zrangebyscore(FINISHED_KEY, "-inf", cutoff_ms, start=0, num=limit)
        return [text(i) for i in ids]

    async def active_before(self, cutoff_ms: int, limit: int = 200) -> list[str]:
        ids = await self.redis.zrangebyscore(ACTIVE_KEY, "-inf", cutoff_ms, start=0, num=limit)
        return [text(i) for i in ids]

    async def drop_from_index(self, task_id: str, *, active: bool, finished: bool) -> None:
        """Drop an id from the active and/or the finished set: for ids whose record is
        gone, or is not in the state the set implies."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if active:
                pipe.zrem(ACTIVE_KEY, task_id)
            if finished:
                pipe.zrem(FINISHED_KEY, task_id)
            await pipe.execute()

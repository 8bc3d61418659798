"""The task endpoints: list, show, download the result, cancel; and the operations list.

Every task belongs to the user who uploaded it. Another user's task answers 404
exactly as a missing one does (same status, same body), on every route.

:class:`TaskEndpoints` is built from what it uses (the task store, ARQ's queue, the
results directory); authentication comes from Starlette's AuthenticationMiddleware
(``request.user.identity`` is the user id).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import quote

from arq.connections import ArqRedis
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    MalformedRangeHeader,
    RangeNotSatisfiable,
    Response,
)
from starlette.routing import BaseRoute, Route

from processing.operations import REGISTRY, available_operations, result_filename
from processing.submit import cancel_task
from processing.tasks import Task, TaskStatus, TaskStore
from tusd_py.errors import ApiError

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_NOT_FOUND = "task not found"


def caller_id(request: Request) -> str:
    """The authenticated user's id, or 401."""
    user = request.scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        raise ApiError(401, "authentication required")
    return str(user.identity)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be an integer between 1 and {MAX_LIMIT}")
    return int(raw)


def _status(raw: str | None) -> TaskStatus | None:
    if raw is None:
        return None
    try:
        return TaskStatus(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in TaskStatus)
        raise ApiError(400, f"status must be one of {allowed}") from None


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` fallback and the exact name as RFC 6266 /
    RFC 8187 ``filename*``; separators, quotes and control characters never get through."""
    name = "".join("_" if ch in '/\\"' or not ch.isprintable() else ch for ch in filename)
    name = name.strip().lstrip(".") or "result"
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in "%;" else "_" for ch in name)
    encoded = quote(name, safe="!#$&+-.^_`|~")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _check_range(header: str | None, size: int) -> None:
    """Refuse a bad ``Range`` with our JSON errors (FileResponse would answer plain text)."""
    if not header:
        return
    try:
        FileResponse._parse_range_header(header, size)
    except MalformedRangeHeader as exc:
        raise ApiError(400, exc.content or "malformed Range header", code="invalid_range") from None
    except RangeNotSatisfiable:
        raise ApiError(416, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"}) from None


class TaskEndpoints:
    """The task routes, composed from the services they use."""

    def __init__(
        self,
        tasks: TaskStore,
        arq: ArqRedis,
        *,
        results_dir: Path,
        enable_fault_operations: bool,
    ) -> None:
        self.tasks = tasks
        self.arq = arq
        self.results_dir = results_dir
        self.enable_fault_operations = enable_fault_operations

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/operations", self.list_operations, methods=["GET"]),
            Route("/tasks", self.list_tasks, methods=["GET"]),
            Route("/tasks/{task_id}", self.task_resource, methods=["GET", "DELETE"]),
            Route("/tasks/{task_id}/result", self.download_result, methods=["GET"]),
        ]

    async def owned_task(self, request: Request, owner: str) -> Task:
        """The task named in the path if ``owner`` owns it; 404 otherwise (also when it
        exists but is someone else's)."""
        task = await self.tasks.get_for(request.path_params["task_id"], owner)
        if task is None:
            raise ApiError(404, _NOT_FOUND)
        return task

    async def list_operations(self, request: Request) -> Response:
        operations = [
            {"name": op.name, "description": op.description}
            for op in available_operations(self.enable_fault_operations)
        ]
        return JSONResponse({"operations": operations})

    async def list_tasks(self, request: Request) -> Response:
        owner = caller_id(request)
        query = request.query_params
        limit = _limit(query.get("limit"))
        status = _status(query.get("status"))
        try:
            page = await self.tasks.list_for(owner, limit=limit, cursor=query.get("cursor"), status=status)
        except ValueError:
            raise ApiError(400, "invalid cursor") from None
        return JSONResponse({"tasks": [t.to_public() for t in page.tasks], "next_cursor": page.next_cursor})

    async def get_task(self, request: Request) -> Response:
        task = await self.owned_task(request, caller_id(request))
        return JSONResponse(task.to_public())

    async def download_result(self, request: Request) -> Response:
        task = await self.owned_task(request, caller_id(request))
        if task.status is not TaskStatus.COMPLETED:
            raise ApiError(409, f"task is {task.status.value}, not completed", code="not_completed")
        path = self.results_dir / task.id
        try:
            stat = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            raise ApiError(404, "result not found") from None
        _check_range(request.headers.get("range"), stat.st_size)
        operation = REGISTRY.get(task.operation)
        return FileResponse(
            path,
            stat_result=stat,
            media_type=operation.content_type if operation else "application/octet-stream",
            headers={
                "Content-Disposition": content_disposition(result_filename(task.filename, task.operation)),
                "Cache-Control": "private, no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def cancel(self, request: Request) -> Response:
        """Cancel a queued, running or retrying task: 200 with the cancelled task (a running
        try's child is killed within the worker's poll delay); 409 once it has ended."""
        task = await self.owned_task(request, caller_id(request))
        if task.status.is_final:
            raise ApiError(409, f"task already {task.status.value}", code="already_finished")
        cancelled = await cancel_task(self.tasks, self.arq, task)
        if cancelled is None:  # it ended while we were at it
            latest = await self.tasks.get(task.id)
            state = latest.status.value if latest is not None else "gone"
            raise ApiError(409, f"task already {state}", code="already_finished")
        return JSONResponse(cancelled.to_public())

    async def task_resource(self, request: Request) -> Response:
        """One route for both methods, so a 405 lists them all in ``Allow``."""
        return await (self.cancel(request) if request.method == "DELETE" else self.get_task(request))

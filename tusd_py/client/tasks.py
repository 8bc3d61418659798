"""Following a task to its end (Server-Sent Events, polling as the fallback) and saving its result."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from tusd_py.client.session import ClientError, Session, server_message

FINAL_STATES = frozenset({"completed", "failed", "cancelled"})
POLL_INTERVAL = 0.5
STREAM_TIMEOUT = (30.0, 60.0)
"""Connect, then read: the server sends a comment every 15 s, so 60 s of silence is a dead stream."""

Task = dict[str, Any]


def _sse_data(response: requests.Response) -> Iterator[str]:
    """The ``data`` of each event in a ``text/event-stream`` (comments and ids skipped)."""
    data: list[str] = []
    for line in response.iter_lines(decode_unicode=True):
        if line == "":
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def get_task(session: Session, task_id: str) -> Task:
    response = session.request("GET", f"/tasks/{task_id}")
    if response.status_code != 200:
        raise ClientError(f"task {task_id}: {server_message(response.status_code, response.content)}")
    task: Task = response.json()
    return task


def follow(session: Session, task_id: str, on_update: Callable[[Task], None]) -> Task:
    """Report every state the task goes through; return it once it is final.

    The task's event stream replays what happened so far and ends after the final event; if it
    cannot be opened or breaks off, polling ``GET /tasks/{id}`` takes over.
    """
    task = get_task(session, task_id)
    on_update(task)
    if task["status"] in FINAL_STATES:
        return task
    try:
        with session.request(
            "GET", f"/tasks/{task_id}/events", stream=True, timeout=STREAM_TIMEOUT
        ) as stream:
            if stream.status_code == 200:
                for data in _sse_data(stream):
                    event = json.loads(data)
                    if isinstance(event, dict) and event.get("id") == task_id:
                        task = event
                        on_update(task)
                        if task["status"] in FINAL_STATES:
                            return task
    except (requests.RequestException, ClientError, ValueError):
        pass  # the stream is a convenience; polling below is the ground truth
    while True:
        task = get_task(session, task_id)
        on_update(task)
        if task["status"] in FINAL_STATES:
            return task
        time.sleep(POLL_INTERVAL)


def _attachment_name(disposition: str) -> str:
    """The ASCII ``filename`` of a Content-Disposition, reduced to a bare file name."""
    match = re.search(r'filename="([^"]*)"', disposition)
    name = Path(match.group(1)).name if match else ""
    return name.lstrip(".") or "result"


def download(session: Session, task_id: str, output_dir: Path) -> Path:
    """Save the result as ``<output_dir>/<task id>-<result name>`` (atomically: no half files)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with session.request("GET", f"/tasks/{task_id}/result", stream=True) as response:
        if response.status_code != 200:
            raise ClientError(
                f"task {task_id}: result: {server_message(response.status_code, response.content)}"
            )
        target = output_dir / f"{task_id}-{_attachment_name(response.headers.get('content-disposition', ''))}"
        partial = target.with_name(f".{target.name}.part")
        try:
            with partial.open("wb") as out:
                for chunk in response.iter_content(1024 * 1024):
                    out.write(chunk)
        except requests.RequestException as exc:
            partial.unlink(missing_ok=True)
            raise ClientError(
                f"task {task_id}: the download broke off ({type(exc).__name__}); run again"
            ) from None
        partial.replace(target)
    return target.resolve()

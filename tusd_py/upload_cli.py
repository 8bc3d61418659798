"""``tusd-py upload``: resumable uploads from a terminal, with progress bars.

The tus work is tuspy's; around it this module keeps our own resume state
(:mod:`tusd_py.client.resume`: per server, user, operation and file identity), drops an entry
whose upload the server no longer has and starts over, renews the token during long uploads,
turns every failure into one line with the server's own message, and answers Ctrl-C with how
far it got. ``--wait`` follows each task (a second bar) and saves its result.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TransferSpeedColumn,
)
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError
from tusclient.uploader import Uploader

from tusd_py.client import tasks
from tusd_py.client.resume import FileIdentity, ResumeKey, ResumeStore, default_state_dir
from tusd_py.client.session import ClientError, Session, server_message, unreachable

DEFAULT_URL = "http://127.0.0.1:8080"
RETRIES = 5
"""Network errors, 409, 423 and 5xx on a PATCH: re-read the offset and go on, this many times."""
RETRYABLE = frozenset({409, 423, 500, 502, 503, 504})
GONE = frozenset({404, 410})
T = TypeVar("T")


def _tus(call: Callable[[], T]) -> T:
    """tuspy lets some ``requests`` errors through (its HEAD); make them a status-less tus error."""
    try:
        return call()
    except requests.RequestException as exc:
        raise TusCommunicationError(exc) from None  # as tuspy itself wraps them: the cause is args[0]


def add_upload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="files to upload")
    parser.add_argument(
        "--url",
        default=os.environ.get("TUSD_PY_URL", DEFAULT_URL),
        help=f"service base URL (env TUSD_PY_URL; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token", default=os.environ.get("TUSD_PY_TOKEN"), help="access token (env TUSD_PY_TOKEN)"
    )
    parser.add_argument(
        "--username",
        help="log in as this user and renew the token as needed (password: prompt or --password-stdin)",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password for --username from the first line of stdin",
    )
    parser.add_argument("--operation", default="uppercase", help="processing operation (see GET /operations)")
    parser.add_argument(
        "--chunk-size", type=int, default=8 * 1024 * 1024, help="bytes per PATCH (default 8 MiB)"
    )
    parser.add_argument("--wait", action="store_true", help="follow each task and download its result")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("."), help="where --wait saves results (default: .)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="where uploads are remembered for resuming, one file per server (default ~/.local/state/tusd-py/uploads)",
    )


@dataclass
class Standing:
    """How far the current file got: what Ctrl-C reports."""

    name: str = ""
    offset: int = 0
    size: int = 0
    phase: str = "starting"


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def _session(args: argparse.Namespace) -> Session:
    session = Session(args.url)
    if args.username:
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        elif sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.username}: ")
        else:
            raise ClientError("no terminal to ask the password on: pipe it in with --password-stdin")
        session.login(args.username, password)
    elif args.token:
        session.use_token(str(args.token))
    else:
        raise ClientError(
            "give --username (then the password at the prompt or with --password-stdin) or --token"
        )
    return session


class FileUpload:
    """One file's upload, resumed from the store when the server still has it."""

    def __init__(
        self, args: argparse.Namespace, session: Session, store: ResumeStore, path: Path, console: Console
    ) -> None:
        self.args, self.session, self.store, self.path, self.console = args, session, store, path, console
        self.tus = tus_client.TusClient(f"{session.base_url}/files/", headers=session.headers)

    def _fail(self, exc: TusCommunicationError, doing: str) -> ClientError:
        if exc.status_code is None:
            cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
            return unreachable(self.session.base_url, cause)
        return ClientError(f"{doing}: {server_message(exc.status_code, exc.response_content)}")

    def _uploader(self, url: str | None) -> Uploader:
        """tuspy's uploader; with a URL it HEADs the upload for its offset (401: renew once)."""
        for attempt in (1, 2):
            try:
                return _tus(
                    lambda: self.tus.uploader(
                        str(self.path),
                        url=url,
                        chunk_size=self.args.chunk_size,
                        metadata={"filename": self.path.name, "operation": self.args.operation},
                        upload_checksum=True,
                    )
                )
            except TusCommunicationError as exc:
                if exc.status_code == 401 and attempt == 1:
                    self.session.refresh()
                    continue
                raise
        raise AssertionError("unreachable")

    def _resume_or_create(self, key: ResumeKey) -> Uploader:
        url = self.store.get(key)
        if url is not None:
            try:
                return self._uploader(url)
            except TusCommunicationError as exc:
                if exc.status_code not in GONE:
                    raise self._fail(exc, "cannot resume the upload") from None
                self.store.remove(key)
                self.console.print(
                    f"{self.path.name}: the server no longer has the earlier upload "
                    f"(HTTP {exc.status_code}); starting over"
                )
        uploader = self._uploader(None)
        for attempt in (1, 2):
            try:
                url = _tus(uploader.create_url)
                break
            except TusCommunicationError as exc:
                if exc.status_code == 401 and attempt == 1:
                    self.session.refresh()
                    continue
                raise self._fail(exc, "the server refused the upload") from None
        uploader.set_url(url)
        uploader.offset = 0
        self.store.put(key, url)
        return uploader

    def run(self, progress: Progress, standing: Standing) -> str:
        """Upload the file; return its task id (the upload id)."""
        standing.name, standing.phase, standing.offset = self.path.name, "checking", 0
        key = ResumeKey(self.session.user_id, self.args.operation, FileIdentity.of(self.path))
        standing.size = key.file.size
        self.session.refresh_if_due()
        uploader = self._resume_or_create(key)
        standing.phase, standing.offset = "uploading", uploader.offset
        bar = progress.add_task(self.path.name, total=key.file.size, completed=uploader.offset)
        failures = 0
        refreshed = False
        while uploader.offset < key.file.size:
            self.session.refresh_if_due()
            try:
                _tus(uploader.upload_chunk)
                failures, refreshed = 0, False
            except TusCommunicationError as exc:
                if exc.status_code == 401 and not refreshed:
                    self.session.refresh()  # raises, with what to do, when it cannot
                    refreshed = True
                elif exc.status_code == 401:
                    raise self._fail(exc, "the server refused the renewed token") from None
                elif exc.status_code in GONE:
                    self.store.remove(key)
                    raise self._fail(
                        exc, "the upload vanished on the server; run again to start over"
                    ) from None
                elif (exc.status_code is None or exc.status_code in RETRYABLE) and failures < RETRIES:
                    failures += 1
                    time.sleep(min(8.0, 0.5 * 2**failures))
                else:
                    raise self._fail(exc, "the upload failed") from None
                try:
                    uploader.offset = _tus(uploader.get_offset)
                except TusCommunicationError as again:
                    if again.status_code is not None and again.status_code not in RETRYABLE:
                        raise self._fail(again, "the upload failed") from None
                    if failures >= RETRIES:
                        raise self._fail(again, "the upload failed") from None
            standing.offset = uploader.offset
            progress.update(bar, completed=uploader.offset)
        standing.phase = "uploaded"
        return str(uploader.url).rstrip("/").rsplit("/", 1)[-1]


def _wait(session: Session, task_id: str, name: str, output_dir: Path, progress: Progress) -> bool:
    bar = progress.add_task(f"{name} [{task_id[:8]}] queued", total=1.0)

    def show(task: tasks.Task) -> None:
        fraction = float(task.get("progress") or 0.0)
        progress.update(bar, completed=fraction, description=f"{name} [{task_id[:8]}] {task['status']}")

    task = tasks.follow(session, task_id, show)
    if task["status"] != "completed":
        progress.console.print(f"{name}: task {task_id} {task['status']}: {task.get('error')}")
        return False
    target = tasks.download(session, task_id, output_dir)
    print(f"{name}: completed -> {target}", flush=True)
    return True


def _interrupted_line(standing: Standing, waiting: bool) -> str:
    if waiting:
        return (
            f"interrupted while waiting for {standing.name}'s task; the uploads are done: "
            "run the same command again to wait for the results"
        )
    if standing.phase != "uploading" or not standing.size:
        return (
            f"interrupted before {standing.name or 'the upload'} started sending; run the same command again"
        )
    percent = 100 * standing.offset // standing.size
    return (
        f"interrupted: {standing.name} at {_human(standing.offset)} of {_human(standing.size)} ({percent}%) "
        "is kept on the server; run the same command again to resume"
    )


def run_upload(args: argparse.Namespace) -> int:
    # One message, one line, in logs too; file names and server messages are text, not markup.
    console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
    standing = Standing()
    waiting = False
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    ok = True
    try:
        session = _session(args)
        store = ResumeStore(args.state_dir, session.base_url)
        done: list[tuple[Path, str]] = []
        with Progress(*columns, console=console) as progress:
            for path in args.files:
                try:
                    task_id = FileUpload(args, session, store, path, progress.console).run(progress, standing)
                except (ClientError, OSError) as exc:
                    progress.console.print(f"{path}: {exc}")
                    ok = False
                    continue
                done.append((path, task_id))
        waiting = bool(args.wait)  # before the task lines: a Ctrl-C after them is "while waiting"
        for path, task_id in done:
            print(f"{path.name}: task {task_id}: {session.base_url}/tasks/{task_id}", flush=True)
        if args.wait:
            with Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                TaskProgressColumn(),
                console=console,
            ) as progress:
                for path, task_id in done:
                    standing.name = path.name
                    try:
                        ok = _wait(session, task_id, path.name, args.output_dir, progress) and ok
                    except (ClientError, OSError) as exc:
                        progress.console.print(f"{path.name}: {exc}")
                        ok = False
    except ClientError as exc:
        print(f"tusd-py upload: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_interrupted_line(standing, waiting), file=sys.stderr)
        return 130
    return 0 if ok else 1

"""``tusd-py upload``: resumable uploads from a terminal, with a progress bar.

Upload URLs are remembered per file fingerprint (tuspy's FileStorage), so
running the same command again after a network failure or Ctrl-C resumes
where the server says the upload stands instead of starting over.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import time
from pathlib import Path

import requests
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.storage.filestorage import FileStorage

DEFAULT_URL = "http://127.0.0.1:8080"
FINAL_STATES = {"completed", "failed", "cancelled"}


def add_upload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="files to upload")
    parser.add_argument(
        "--url",
        default=os.environ.get("TUSD_PY_URL", DEFAULT_URL),
        help="service base URL (env TUSD_PY_URL)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("TUSD_PY_TOKEN"), help="access token (env TUSD_PY_TOKEN)"
    )
    parser.add_argument("--username", help="log in as this user (password from TUSD_PY_PASSWORD or a prompt)")
    parser.add_argument("--operation", default="uppercase", help="processing operation (see GET /operations)")
    parser.add_argument(
        "--chunk-size", type=int, default=8 * 1024 * 1024, help="bytes per PATCH (default 8 MiB)"
    )
    parser.add_argument("--wait", action="store_true", help="wait for each task and download its result")
    parser.add_argument("--output-dir", type=Path, default=Path("."), help="where --wait saves results")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=Path.home() / ".cache" / "tusd-py" / "uploads.json",
        help="where upload URLs are remembered for resuming",
    )


def _access_token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    if not args.username:
        raise SystemExit("tusd-py upload: give --token (or TUSD_PY_TOKEN) or --username")
    password = os.environ.get("TUSD_PY_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    response = requests.post(
        f"{args.url}/auth/login", json={"username": args.username, "password": password}, timeout=30
    )
    if response.status_code != 200:
        raise SystemExit(f"tusd-py upload: login failed ({response.status_code}): {response.text}")
    return str(response.json()["access_token"])


def _upload_one(args: argparse.Namespace, headers: dict[str, str], path: Path, progress: Progress) -> str:
    args.state_file.parent.mkdir(parents=True, exist_ok=True)
    uploader = tus_client.TusClient(f"{args.url}/files/", headers=headers).uploader(
        str(path),
        chunk_size=args.chunk_size,
        metadata={"filename": path.name, "operation": args.operation},
        store_url=True,
        url_storage=FileStorage(str(args.state_file)),
        retries=5,
        retry_delay=2,
        upload_checksum=True,
    )
    size = uploader.get_file_size()
    bar = progress.add_task(path.name, total=size, completed=uploader.offset)
    if uploader.url is None:
        uploader.set_url(uploader.create_url())  # also creates empty files
    while uploader.offset < size:
        uploader.upload_chunk()
        progress.update(bar, completed=uploader.offset)
    return str(uploader.url).rstrip("/").rsplit("/", 1)[-1]


def _attachment_name(disposition: str) -> str:
    """The ASCII ``filename`` of a Content-Disposition, reduced to a bare file name."""
    match = re.search(r'filename="([^"]*)"', disposition)
    name = Path(match.group(1)).name if match else ""
    return name.lstrip(".") or "result"


def _wait_and_download(args: argparse.Namespace, headers: dict[str, str], task_id: str) -> bool:
    while True:
        task = requests.get(f"{args.url}/tasks/{task_id}", headers=headers, timeout=30).json()
        if task.get("status") in FINAL_STATES:
            break
        time.sleep(0.5)
    if task["status"] != "completed":
        print(f"{task_id}: {task['status']}: {task.get('error')}", file=sys.stderr)
        return False
    with requests.get(
        f"{args.url}/tasks/{task_id}/result", headers=headers, stream=True, timeout=30
    ) as response:
        response.raise_for_status()
        target = (
            args.output_dir / f"{task_id}-{_attachment_name(response.headers.get('content-disposition', ''))}"
        )
        with target.open("wb") as out:
            for chunk in response.iter_content(1024 * 1024):
                out.write(chunk)
    print(f"{task_id}: completed -> {target}")
    return True


def run_upload(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {_access_token(args)}"}
    ok = True
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns) as progress:
        task_ids = []
        for path in args.files:
            try:
                task_ids.append(_upload_one(args, headers, path, progress))
            except (TusCommunicationError, TusUploadFailed, OSError) as exc:
                progress.console.print(f"[red]{path}: {exc}")
                ok = False
    for task_id in task_ids:
        print(f"task {task_id}: {args.url}/tasks/{task_id}")
        if args.wait:
            ok = _wait_and_download(args, headers, task_id) and ok
    return 0 if ok else 1

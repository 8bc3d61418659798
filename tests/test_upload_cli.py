"""`tusd-py upload`: a real tus upload from the command line, resumed, processed, downloaded."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import Service, User


def cli_command(live: Service, user: User, tmp_path: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "tusd_py", "upload", "--url", live.base_url, "--token", user.access_token,
        "--state-file", str(tmp_path / "state.json"), "--output-dir", str(tmp_path), *args,
    ]  # fmt: skip


CLI_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_PY_")}


def run_cli(live: Service, user: User, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = cli_command(live, user, tmp_path, *args)
    return subprocess.run(command, env=CLI_ENV, capture_output=True, text=True, timeout=120)


def test_upload_wait_and_download(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("tus makes uploads resumable. ünïcode too.\n" * 5000)
    result = run_cli(live, user, tmp_path, str(source), "--chunk-size", "65536", "--wait")
    assert result.returncode == 0, result.stderr
    saved = [line.split(" -> ", 1)[1] for line in result.stdout.splitlines() if " -> " in line]
    assert len(saved) == 1
    assert saved[0].endswith("-notes.txt.upper.txt")
    assert Path(saved[0]).read_text() == source.read_text().upper()


def test_wrong_token_fails_cleanly(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("x")
    user.tokens["access_token"] = "not-a-token"
    result = run_cli(live, user, tmp_path, str(source))
    assert result.returncode == 1
    assert "401" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_killed_upload_resumes_when_run_again(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "big.txt"
    source.write_bytes(b"resumable line\n" * 600_000)  # 9 MB in 64 KiB PATCHes
    first = subprocess.Popen(
        cli_command(live, user, tmp_path, str(source), "--chunk-size", "65536"),
        env=CLI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    state = tmp_path / "state.json"
    deadline = time.monotonic() + 60
    offset = 0
    while offset < 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
        stored = re.search(r'"url": "([^"]+)"', state.read_text()) if state.exists() else None
        if stored:  # tuspy's URL storage has the upload's URL: ask the server where it stands
            upload_url = stored.group(1)
            head = httpx.head(upload_url, headers={**user.headers, "Tus-Resumable": "1.0.0"})
            offset = int(head.headers.get("upload-offset", 0))
    first.kill()
    first.wait()
    assert 0 < offset < source.stat().st_size

    again = run_cli(live, user, tmp_path, str(source), "--chunk-size", "1048576", "--wait")
    assert again.returncode == 0, again.stderr
    assert upload_url.rsplit("/", 1)[-1] in again.stdout  # the same upload, continued
    saved = next(line.split(" -> ", 1)[1] for line in again.stdout.splitlines() if " -> " in line)
    assert Path(saved).read_bytes() == source.read_bytes().upper()

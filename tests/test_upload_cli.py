"""`tusd-py upload`: a real tus upload from the command line, resumed, processed, downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import Service, User


def run_cli(live: Service, user: User, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tusd_py", "upload", "--url", live.base_url, "--token", user.access_token,
         "--state-file", str(tmp_path / "state.json"), "--output-dir", str(tmp_path), *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("TUSD_PY_")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_upload_wait_and_download(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("tus makes uploads resumable. ünïcode too.\n" * 5000)
    result = run_cli(live, user, tmp_path, str(source), "--chunk-size", "65536", "--wait")
    assert result.returncode == 0, result.stderr
    saved = [line.split(" -> ", 1)[1] for line in result.stdout.splitlines() if " -> " in line]
    assert len(saved) == 1
    assert Path(saved[0]).read_text() == source.read_text().upper()


def test_wrong_token_fails_cleanly(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("x")
    user.tokens["access_token"] = "not-a-token"
    result = run_cli(live, user, tmp_path, str(source))
    assert result.returncode == 1
    assert "401" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr

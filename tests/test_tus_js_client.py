"""tus-js-client (what browsers and Uppy use), run under Node against the live service.

`make test` installs it with npm into tests/js/node_modules; without Node and npm
on the machine these tests are skipped, never faked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import Service, User

JS_DIR = Path(__file__).parent / "js"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (JS_DIR / "node_modules" / "tus-js-client").is_dir(),
    reason="Node and tus-js-client (npm install in tests/js) are not available",
)


def run_client(mode: str, live: Service, user: User, source: Path, state: Path) -> dict[str, object]:
    result = subprocess.run(
        ["node", str(JS_DIR / "tus_upload.cjs"), mode, f"{live.base_url}/files/", user.access_token, str(source), str(state)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}


def completed_result(live: Service, user: User, url: str) -> bytes:
    task_id = url.rstrip("/").rsplit("/", 1)[-1]
    with live.client(user) as client:
        deadline = time.monotonic() + 60
        while (task := client.get(f"/tasks/{task_id}").json())["status"] not in {"completed", "failed"}:
            assert time.monotonic() < deadline, task
            time.sleep(0.1)
        assert task["status"] == "completed", task
        assert task["filename"] == "from-tus-js-client.txt"
        return client.get(f"/tasks/{task_id}/result").content


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "input.txt"
    path.write_bytes(b"".join(f"line {i}: tus-js-client \xc3\xa9t\xc3\xa9\n".encode() for i in range(40_000)))
    return path


def test_simple_upload(live: Service, user: User, source: Path, tmp_path: Path) -> None:
    done = run_client("simple", live, user, source, tmp_path / "state.json")
    assert completed_result(live, user, str(done["url"])) == source.read_bytes().upper().replace(
        b"\xc3\xa9", b"\xc3\x89"
    )


def test_parallel_uploads_use_concatenation(live: Service, user: User, source: Path, tmp_path: Path) -> None:
    done = run_client("parallel", live, user, source, tmp_path / "state.json")
    head = httpx.head(str(done["url"]), headers={**user.headers, "Tus-Resumable": "1.0.0"})
    assert head.headers["upload-concat"].startswith("final;")
    assert len(head.headers["upload-concat"].removeprefix("final;").split()) == 3
    assert completed_result(live, user, str(done["url"])) == source.read_text().upper().encode()


def test_a_closed_tab_resumes_where_it_stopped(
    live: Service, user: User, source: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    run_client("crash", live, user, source, state)
    assert "tus::" in state.read_text()  # the crashed client left its upload URL behind
    done = run_client("resume", live, user, source, state)
    assert int(str(done["firstProgress"])) >= source.stat().st_size // 2  # no byte sent twice from 0
    assert completed_result(live, user, str(done["url"])) == source.read_text().upper().encode()

"""The web console at / in a real headless Chromium: upload, live tasks, download, resume, isolation."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser.driver import CHROMIUM, HERE, run_scenario
from tests.support import Service

pytestmark = pytest.mark.usefixtures("console_ready")
# What a killed API looks like to the page: the open stream breaks, and the next tries are refused.
EXPECTED_DROP_ERRORS = ("ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_CONNECTION_REFUSED", "ERR_EMPTY_RESPONSE")


def text_file(path: Path, size: int) -> Path:
    line = b"the quick brown fox jumps over the lazy dog 0123456789\n"
    path.write_bytes((line * (size // len(line) + 1))[:size])
    return path


def test_console_page_headers(live: Service) -> None:
    page = httpx.get(f"{live.base_url}/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/console/app.js">' in page.text and "//cdn" not in page.text
    vendor = httpx.get(f"{live.base_url}/console/vendor/uppy.min.mjs")
    assert vendor.status_code == 200 and vendor.headers["x-content-type-options"] == "nosniff"
    assert vendor.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{live.base_url}/console/vendor/missing.js").status_code == 404


def test_upload_watch_and_download_then_another_user_sees_nothing(live: Service, tmp_path: Path) -> None:
    source = text_file(tmp_path / "twenty.txt", 20 * 1024 * 1024)
    result = run_scenario("console.cjs", "upload", live.base_url, str(source))
    assert result["errors"] == []
    assert result["operation"] == "uppercase"
    (row,) = result["rows"]
    assert row["status"] == "completed" and row["filename"] == "twenty.txt" and row["attempts"] == "1/4"
    expected = source.read_bytes().upper()
    assert result["download"] == {"size": len(expected), "sha256": hashlib.sha256(expected).hexdigest()}
    assert result["otherRows"] == [] and row["id"] not in result["otherHtml"]
    assert result["storedAfterLogout"] is None
    # logout revoked the access token the page held
    assert (
        httpx.get(
            f"{live.base_url}/auth/me", headers={"Authorization": f"Bearer {result['token']}"}
        ).status_code
        == 401
    )


def test_reload_mid_upload_resumes_where_the_server_is(live: Service, tmp_path: Path) -> None:
    size = 30 * 1024 * 1024
    source = text_file(tmp_path / "thirty.txt", size)
    result = run_scenario("console.cjs", "resume", live.base_url, str(source))
    assert result["errors"] == []
    created = [r for r in result["before"] if r["method"] == "POST"]
    assert len(created) == 1 and created[0]["status"] == 201
    upload_url = created[0]["url"]
    after = result["after"]
    assert [r for r in after if r["method"] == "POST"] == []  # no new upload after the reload
    head = next(r for r in after if r["method"] == "HEAD")
    assert head["url"] == upload_url and head["status"] == 200
    resumed_at = int(head["responseOffset"])
    assert 0 < resumed_at < size
    patches = [r for r in after if r["method"] == "PATCH"]
    assert patches and all(p["url"] == upload_url and p["status"] == 204 for p in patches)
    assert int(patches[0]["requestOffset"]) == resumed_at
    # only the rest was sent: the PATCHes after the reload added exactly size - resumed_at bytes
    assert sum(int(p["responseOffset"]) - int(p["requestOffset"]) for p in patches) == size - resumed_at
    (row,) = result["rows"]
    assert row["status"] == "completed" and row["filename"] == "thirty.txt"


def test_the_console_refreshes_its_token_before_it_expires(service_factory: Callable[..., Service]) -> None:
    service = service_factory(access_token_ttl="30")  # the shortest lifetime the settings allow
    result = run_scenario("console.cjs", "refresh", service.base_url)
    assert result["errors"] == []
    first, second = result["first"], result["second"]
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert result["refreshedBeforeExpiry"] is True
    assert result["me"] == 200


def test_a_dropped_stream_reconnects_with_a_new_ticket_and_the_last_event_id(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    service = service_factory(workers=1)
    first, second = text_file(tmp_path / "first.txt", 10_000), text_file(tmp_path / "second.txt", 20_000)
    node = subprocess.Popen(
        ["node", str(HERE / "console.cjs"), "reconnect", service.base_url, str(first), str(second)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CHROMIUM": CHROMIUM},
    )  # fmt: skip
    try:
        assert node.stdout is not None and node.stdin is not None
        assert node.stdout.readline().strip() == "drop"
        service.api.kill()  # the stream drops as it would when a node behind a balancer dies
        service.api.stop()
        service.restart_api()
        node.stdin.write("go\n")
        node.stdin.flush()
        out, err = node.communicate(timeout=150)
    finally:
        if node.poll() is None:
            node.kill()
    assert node.returncode == 0, err[-4000:]
    result = json.loads(out.strip().splitlines()[-1])
    # the API was down for a moment: only the failures that caused are expected
    unexpected = [
        e for e in result["errors"] if not any(f"net::{cause}" in e for cause in EXPECTED_DROP_ERRORS)
    ]
    assert unexpected == [], unexpected
    opened = [parse_qs(urlsplit(url).query) for url in result["streams"]]
    assert len(opened) >= 2
    tickets = [query["ticket"][0] for query in opened]
    assert len(set(tickets)) == len(tickets)  # a fresh ticket for every connection
    assert "last_event_id" not in opened[0]
    assert opened[-1]["last_event_id"][0]  # resumed after what it had seen
    assert sorted(row["filename"] for row in result["rows"]) == ["first.txt", "second.txt"]
    assert {row["status"] for row in result["rows"]} == {"completed"}


def test_cancel_a_running_task_and_watch_a_retry(live: Service, tmp_path: Path) -> None:
    hangs, crashes = text_file(tmp_path / "hangs.txt", 5_000), text_file(tmp_path / "crashes.txt", 5_000)
    result = run_scenario("console.cjs", "cancel-and-retry", live.base_url, str(hangs), str(crashes))
    assert result["errors"] == []
    final = {row["filename"]: (row["status"], row["attempts"]) for row in result["rows"]}
    assert final == {"hangs.txt": ("cancelled", "1/4"), "crashes.txt": ("completed", "2/4")}
    retrying = [seen for seen in result["seen"] if seen[0] == "crashes.txt" and seen[1] == "retrying"]
    assert retrying and all(error for *_, error in retrying)  # the crash's error was shown while it retried

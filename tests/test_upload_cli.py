"""`tusd-py upload`: a real tus upload from the command line, resumed, processed, downloaded.

Every test runs the real CLI process (``python -m tusd_py upload``) against a real API and
worker; the resume state lives in the test's own directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import requests

from tests.support import Service, User, free_port
from tusd_py.client import tasks
from tusd_py.client.session import Session

CLI_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_PY_")}


def base_command(live: Service, tmp_path: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "tusd_py", "upload", "--url", live.base_url,
        "--state-dir", str(tmp_path / "state"), "--output-dir", str(tmp_path / "out"), *args,
    ]  # fmt: skip


def cli_command(live: Service, user: User, tmp_path: Path, *args: str) -> list[str]:
    return base_command(live, tmp_path, "--token", user.access_token, *args)


def run_cli(
    live: Service, user: User, tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = cli_command(live, user, tmp_path, *args)
    return subprocess.run(command, env=CLI_ENV, capture_output=True, text=True, timeout=120, input=stdin)


def saved_results(stdout: str) -> list[Path]:
    return [Path(line.split(" -> ", 1)[1]) for line in stdout.splitlines() if " -> " in line]


def task_ids(stdout: str) -> list[str]:
    return [line.split(": task ", 1)[1].split(":", 1)[0] for line in stdout.splitlines() if ": task " in line]


def stored_urls(tmp_path: Path) -> list[str]:
    urls = []
    for state in (tmp_path / "state").glob("*.json"):
        urls += [entry["url"] for entry in json.loads(state.read_text())["uploads"]]
    return urls


def server_offset(url: str, user: User) -> int:
    head = httpx.head(url, headers={**user.headers, "Tus-Resumable": "1.0.0"})
    return int(head.headers.get("upload-offset", 0))


def fresh_login(server: Service, user: User) -> User:
    login = httpx.post(
        f"{server.base_url}/auth/login", json={"username": user.username, "password": user.password}
    )
    assert login.status_code == 200, login.text
    return User(user.id, user.username, user.password, login.json())


def start_and_reach(command: list[str], tmp_path: Path, user: User, past: int, **popen: object):  # type: ignore[no-untyped-def]
    """Start the CLI and return (process, upload URL) once the server holds ``past`` bytes."""
    process = subprocess.Popen(command, env=CLI_ENV, text=True, **popen)  # type: ignore[call-overload]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        urls = stored_urls(tmp_path) if (tmp_path / "state").exists() else []
        if urls and server_offset(urls[0], user) > past:
            return process, urls[0]
        assert process.poll() is None, "the CLI ended before the upload got far"
        time.sleep(0.02)
    process.kill()
    raise AssertionError("the upload never got going")


def test_upload_wait_and_download(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("tus makes uploads resumable. ünïcode too.\n" * 5000)
    result = run_cli(live, user, tmp_path, str(source), "--chunk-size", "65536", "--wait")
    assert result.returncode == 0, result.stderr
    saved = saved_results(result.stdout)
    assert len(saved) == 1
    assert saved[0].parent == (tmp_path / "out").resolve()  # --output-dir, created on demand
    assert saved[0].name == f"{task_ids(result.stdout)[0]}-notes.txt.upper.txt"
    assert saved[0].read_text() == source.read_text().upper()
    assert "completed" in result.stderr  # the task's bar reached its end


def test_same_file_to_two_servers_two_users_two_operations(
    live: Service, user: User, other_user: User, service_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "words.txt"
    source.write_text("the cat and the hat\n" * 100)
    second_server = service_factory(workers=1)
    second_user = second_server.register()

    runs = {
        "first": run_cli(live, user, tmp_path, str(source), "--wait"),
        "other server": run_cli(second_server, second_user, tmp_path, str(source), "--wait"),
        "other user": run_cli(live, other_user, tmp_path, str(source), "--wait"),
        "other operation": run_cli(live, user, tmp_path, str(source), "--wait", "--operation", "wordcount"),
        "again": run_cli(live, user, tmp_path, str(source), "--wait"),
    }
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stderr)
    ids = {name: task_ids(run.stdout)[0] for name, run in runs.items()}
    assert len({ids[n] for n in ("first", "other server", "other user", "other operation")}) == 4
    assert ids["again"] == ids["first"]  # the same command finds its finished upload again
    assert len(list((tmp_path / "state").glob("*.json"))) == 2  # one state file per server

    upper = source.read_text().upper()
    for name in ("first", "other server", "other user", "again"):
        assert saved_results(runs[name].stdout)[0].read_text() == upper
    counts = json.loads(saved_results(runs["other operation"].stdout)[0].read_text())
    assert (counts["words"], counts["top_words"][0]) == (500, {"word": "the", "count": 200})


def test_stale_entry_is_dropped_and_the_upload_starts_over(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = service_factory(workers=1)
    owner = server.register()
    source = tmp_path / "data.txt"
    source.write_text("wiped and sent again\n" * 1000)
    first = run_cli(server, owner, tmp_path, str(source))
    assert first.returncode == 0, first.stderr
    server.api.stop()  # the server's upload data is wiped while it is down (make clean, a new disk)
    shutil.rmtree(server.data_dir / "uploads")
    server.restart_api()

    again = run_cli(server, owner, tmp_path, str(source), "--wait")
    assert again.returncode == 0, again.stderr
    assert "no longer has the earlier upload (HTTP 404); starting over" in again.stderr
    assert task_ids(again.stdout)[0] != task_ids(first.stdout)[0]
    assert saved_results(again.stdout)[0].read_text() == source.read_text().upper()
    assert stored_urls(tmp_path) == [f"{server.base_url}/files/{task_ids(again.stdout)[0]}"]


def test_bad_token_shows_the_servers_message(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("x")
    user.tokens["access_token"] = "not-a-token"
    result = run_cli(live, user, tmp_path, str(source))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "tusd-py upload: the server refused the token: invalid or expired token (HTTP 401, unauthorized)"
    )
    assert result.stdout == ""


def test_unknown_operation_shows_the_servers_explanation(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("x")
    result = run_cli(live, user, tmp_path, str(source), "--operation", "nope")
    assert result.returncode == 1
    assert (
        f"{source}: the server refused the upload: unknown operation 'nope'; see GET /operations "
        "(HTTP 400, invalid_metadata)"
    ) in result.stderr
    assert "Attempt to" not in result.stderr and "Traceback" not in result.stderr
    assert stored_urls(tmp_path) == []


def test_unreachable_server_says_so(tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("x")
    nowhere = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "tusd_py", "upload", "--url", nowhere, "--token", "t", str(source)]
    result = subprocess.run(command, env=CLI_ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"tusd-py upload: cannot reach {nowhere} (ConnectionError); is the server running there?"
    )


def test_ctrl_c_says_how_far_and_the_same_command_resumes(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "big.txt"
    source.write_bytes(b"resumable line\n" * 600_000)  # 9 MB in 64 KiB PATCHes
    command = cli_command(live, user, tmp_path, str(source), "--chunk-size", "65536")
    first, upload_url = start_and_reach(
        command, tmp_path, user, 1_000_000, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130
    bars = [line for line in stderr.splitlines() if line.startswith("big.txt ━")]  # the bar's last frame
    lines = [line for line in stderr.splitlines() if line.strip() and line not in bars]
    assert len(bars) == 1 and len(lines) == 1 and lines[0].startswith("interrupted: big.txt at "), stderr
    assert " of 9.0 MB (" in lines[0]
    assert lines[0].endswith("is kept on the server; run the same command again to resume")
    kept = server_offset(upload_url, user)
    assert 0 < kept < source.stat().st_size

    again = run_cli(live, user, tmp_path, str(source), "--chunk-size", "1048576", "--wait")
    assert again.returncode == 0, again.stderr
    assert task_ids(again.stdout) == [upload_url.rsplit("/", 1)[-1]]  # the same upload, continued
    assert saved_results(again.stdout)[0].read_bytes() == source.read_bytes().upper()


def test_killed_upload_resumes_when_run_again(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "big.txt"
    source.write_bytes(b"resumable line\n" * 600_000)
    command = cli_command(live, user, tmp_path, str(source), "--chunk-size", "65536")
    first, upload_url = start_and_reach(
        command, tmp_path, user, 1_000_000, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first.kill()
    first.wait()
    assert 0 < server_offset(upload_url, user) < source.stat().st_size

    again = run_cli(live, user, tmp_path, str(source), "--chunk-size", "1048576", "--wait")
    assert again.returncode == 0, again.stderr
    assert task_ids(again.stdout) == [upload_url.rsplit("/", 1)[-1]]
    assert saved_results(again.stdout)[0].read_bytes() == source.read_bytes().upper()


def test_username_with_password_stdin(live: Service, user: User, tmp_path: Path) -> None:
    source = tmp_path / "login.txt"
    source.write_text("logged in\n")
    command = base_command(
        live, tmp_path, "--username", user.username, "--password-stdin", str(source), "--wait"
    )
    result = subprocess.run(
        command, env=CLI_ENV, capture_output=True, text=True, timeout=120, input=user.password + "\n"
    )
    assert result.returncode == 0, result.stderr
    task = httpx.get(f"{live.base_url}/tasks/{task_ids(result.stdout)[0]}", headers=user.headers)
    assert task.status_code == 200  # the upload belongs to the user who logged in
    assert saved_results(result.stdout)[0].read_text() == "LOGGED IN\n"

    wrong = subprocess.run(
        command, env=CLI_ENV, capture_output=True, text=True, timeout=120, input="not the password\n"
    )
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == (
        f"tusd-py upload: login as '{user.username}' failed: wrong username or password (HTTP 401, unauthorized)"
    )


def test_username_without_a_terminal_asks_for_password_stdin(
    live: Service, user: User, tmp_path: Path
) -> None:
    source = tmp_path / "a.txt"
    source.write_text("x")
    command = base_command(live, tmp_path, "--username", user.username, str(source))
    result = subprocess.run(
        command, env=CLI_ENV, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "tusd-py upload: no terminal to ask the password on: pipe it in with --password-stdin"
    )


def test_token_is_renewed_when_it_expires_mid_upload(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = service_factory(workers=1, access_token_ttl="2")
    owner = server.register()
    source = tmp_path / "long.txt"
    source.write_bytes(b"a long upload\n" * 400_000)  # 5.6 MB in 64 KiB PATCHes
    command = base_command(
        server, tmp_path, "--username", owner.username, "--password-stdin", "--chunk-size", "65536",
        str(source), "--wait",
    )  # fmt: skip
    (tmp_path / "password").write_text(owner.password + "\n")
    with (tmp_path / "password").open() as password:
        process = subprocess.Popen(
            command, env=CLI_ENV, text=True, stdin=password, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    deadline = time.monotonic() + 60
    while True:  # until the server holds some bytes; our own token is re-minted (it lives 2 s)
        assert time.monotonic() < deadline and process.poll() is None, "the upload never got going"
        urls = stored_urls(tmp_path) if (tmp_path / "state").exists() else []
        if urls and server_offset(urls[0], fresh_login(server, owner)) > 0:
            upload_url = urls[0]
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGSTOP)  # hold the upload past its token's lifetime
    time.sleep(3)
    process.send_signal(signal.SIGCONT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert task_ids(stdout) == [upload_url.rsplit("/", 1)[-1]]
    assert saved_results(stdout)[0].read_bytes() == source.read_bytes().upper()


class RecordingSession(Session):
    """Our real session, noting which API paths it asked for."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.paths: list[str] = []

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.paths.append(path)
        return super().request(method, path, **kwargs)


def test_wait_follows_the_task_through_its_event_stream(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = service_factory(workers=0)  # the task stays queued until we start a worker
    owner = server.register()
    source = tmp_path / "events.txt"
    source.write_text("followed over server-sent events\n" * 20_000)
    uploaded = run_cli(server, owner, tmp_path, str(source))
    assert uploaded.returncode == 0, uploaded.stderr
    task_id = task_ids(uploaded.stdout)[0]

    session = RecordingSession(server.base_url)
    session.use_token(owner.access_token)
    seen: list[tuple[str, float]] = []
    outcome: list[tasks.Task] = []
    follower = threading.Thread(
        target=lambda: outcome.append(
            tasks.follow(session, task_id, lambda task: seen.append((task["status"], task["progress"])))
        )
    )
    follower.start()
    deadline = time.monotonic() + 30
    while f"/tasks/{task_id}/events" not in session.paths:  # subscribed while still queued
        assert time.monotonic() < deadline and follower.is_alive()
        time.sleep(0.01)
    server.start_worker()
    follower.join(60)
    assert outcome and (outcome[0]["status"], outcome[0]["progress"]) == ("completed", 1.0)
    assert seen[0] == ("queued", 0.0) and seen[-1] == ("completed", 1.0)
    assert "processing" in [status for status, _ in seen]
    progress = [fraction for _, fraction in seen]
    assert progress == sorted(progress)  # the bar only moves forward
    assert session.paths == ["/auth/me", f"/tasks/{task_id}", f"/tasks/{task_id}/events"]  # no polling


def test_wait_polls_when_the_event_stream_is_refused(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = service_factory(workers=0, max_event_streams="1")
    owner = server.register()
    source = tmp_path / "polled.txt"
    source.write_text("polled instead\n" * 1000)
    uploaded = run_cli(server, owner, tmp_path, str(source))
    assert uploaded.returncode == 0, uploaded.stderr
    task_id = task_ids(uploaded.stdout)[0]
    task_path, events_path = f"/tasks/{task_id}", f"/tasks/{task_id}/events"
    session = RecordingSession(server.base_url)
    session.use_token(owner.access_token)
    outcome: list[tasks.Task] = []
    follower = threading.Thread(
        target=lambda: outcome.append(tasks.follow(session, task_id, lambda task: None))
    )
    with (
        httpx.Client(base_url=server.base_url, headers=owner.headers, timeout=30) as other,
        other.stream("GET", "/events") as held,  # the user's one allowed stream is taken
    ):
        assert held.status_code == 200
        follower.start()
        deadline = time.monotonic() + 30
        while session.paths[-2:] != [events_path, task_path]:  # refused (429), now polling
            assert time.monotonic() < deadline and follower.is_alive(), session.paths
            time.sleep(0.01)
    server.start_worker()
    follower.join(60)
    assert outcome and outcome[0]["status"] == "completed"
    assert session.paths[: session.paths.index(events_path)] == ["/auth/me", task_path]
    assert set(session.paths[session.paths.index(events_path) + 1 :]) == {task_path}


def test_a_failed_task_is_reported_with_its_error(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = service_factory(workers=1, max_retries="0", enable_fault_operations="true")
    owner = server.register()
    source = tmp_path / "doomed.txt"
    source.write_text("x\n")
    result = run_cli(server, owner, tmp_path, str(source), "--operation", "fault-crash", "--wait")
    assert result.returncode == 1
    task_id = task_ids(result.stdout)[0]
    error = httpx.get(f"{server.base_url}/tasks/{task_id}", headers=owner.headers).json()["error"]
    assert error
    assert f"doomed.txt: task {task_id} failed: {error}" in result.stderr.splitlines()
    assert saved_results(result.stdout) == []


def test_ctrl_c_while_waiting_and_the_same_command_waits_again(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = service_factory(workers=0)  # the task stays queued: the CLI is waiting when we interrupt it
    owner = server.register()
    source = tmp_path / "later.txt"
    source.write_text("results come later\n")
    command = cli_command(server, owner, tmp_path, str(source), "--wait")
    waiting = subprocess.Popen(
        command, env=CLI_ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert waiting.stdout is not None
    task_line = waiting.stdout.readline()  # printed once the upload is complete, before waiting
    assert ": task " in task_line, task_line
    waiting.send_signal(signal.SIGINT)
    rest, stderr = waiting.communicate(timeout=30)
    assert waiting.returncode == 130
    assert [line for line in stderr.splitlines() if line.startswith("interrupted")] == [
        "interrupted while waiting for later.txt's task; the uploads are done: "
        "run the same command again to wait for the results"
    ]
    assert saved_results(rest) == []

    server.start_worker()
    again = run_cli(server, owner, tmp_path, str(source), "--wait")
    assert again.returncode == 0, again.stderr
    assert task_ids(again.stdout) == task_ids(task_line)
    assert saved_results(again.stdout)[0].read_text() == "RESULTS COME LATER\n"

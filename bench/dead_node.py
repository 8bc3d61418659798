"""``python -m bench.dead_node [--runs N]``: how soon uploads resume after an API node's kill -9.

Real processes on loopback: a private redis-server, ``tusd-py api`` nodes on one data
dir, a PATCH trickling in when the node is killed with SIGKILL. Prints, per run:

- restart: kill -9, start the node again; the first HEAD's status and latency, the
  time from the kill to the first HEAD 200, and whether a tuspy resume started 0.5 s
  after the restart (default: no retries) succeeded;
- other node: kill -9 of one node, HEADs at once through a second node; the first
  HEAD's status and latency and the time from the kill to a HEAD 200 there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from tusclient import client as tus_client

from tests.support import Service, start_service, tusd_py_process
from tusd_py.embedded_redis import RedisProcess

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


def trickle(data: bytes):  # type: ignore[no-untyped-def]
    for start in range(0, len(data), 64 * 1024):
        yield data[start : start + 64 * 1024]
        time.sleep(0.01)


def start_patch(service: Service, headers: dict[str, str], data: bytes) -> tuple[str, Path]:
    with httpx.Client(base_url=service.base_url, headers={**headers, **TUS}, timeout=30) as client:
        created = client.post("/files/", headers={"Upload-Length": str(len(data))})
        url = "/files/" + created.headers["location"].rsplit("/", 1)[-1]

    def send() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.Client(base_url=service.base_url, headers={**headers, **TUS}, timeout=30) as client,
        ):
            client.patch(
                url,
                content=trickle(data),
                headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
            )

    threading.Thread(target=send, daemon=True).start()
    data_file = service.data_dir / "uploads" / url.rsplit("/", 1)[-1]
    while not data_file.exists() or data_file.stat().st_size < MiB:
        time.sleep(0.01)
    return url, data_file


def first_heads(base_url: str, url: str, headers: dict[str, str], killed: float) -> tuple[int, float, float]:
    """(first status, its latency, seconds from the kill to the first 200)."""
    first: tuple[int, float] | None = None
    with httpx.Client(base_url=base_url, headers={**headers, **TUS}, timeout=30) as client:
        while True:
            sent = time.monotonic()
            status = client.head(url).status_code
            if first is None:
                first = (status, time.monotonic() - sent)
            if status == 200:
                return first[0], first[1], time.monotonic() - killed
            time.sleep(0.05)


def restart_run(
    service: Service, headers: dict[str, str], work: Path, *, tuspy: bool
) -> dict[str, float | str]:
    """kill -9, restart; then either HEADs at once, or a tuspy resume 0.5 s later (no HEAD before)."""
    data = os.urandom(8 * MiB)
    url, _ = start_patch(service, headers, data)
    service.api.kill()
    killed = time.monotonic()
    service.restart_api()
    result: dict[str, float | str] = {"restart s": round(time.monotonic() - killed, 3)}
    if not tuspy:
        status, latency, ready = first_heads(service.base_url, url, headers, killed)
        result.update(
            {"first head": status, "its latency s": round(latency, 3), "kill to head 200 s": round(ready, 3)}
        )
        return result
    time.sleep(0.5)
    source = work / "source.bin"
    source.write_bytes(data)
    try:
        tus = tus_client.TusClient(service.base_url + "/files/", headers=headers)
        tus.uploader(str(source), url=service.base_url + url, chunk_size=2 * MiB).upload()
        result["tuspy resume"] = "ok"
    except Exception as error:
        result["tuspy resume"] = f"failed ({type(error).__name__}: {error})"[:80]
    return result


def other_node_run(nodes: list[Service], headers: dict[str, str]) -> dict[str, float | str]:
    data = os.urandom(8 * MiB)
    url, _ = start_patch(nodes[0], headers, data)
    nodes[0].api.kill()
    killed = time.monotonic()
    status, latency, ready = first_heads(nodes[1].base_url, url, headers, killed)
    nodes[0].restart_api()
    return {"first head": status, "its latency s": round(latency, 3), "kill to 200 s": round(ready, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dead_node", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dead-node-") as tmp:
        work = Path(tmp)
        redis = RedisProcess(work / "redis", port=_port(), persistent=False)
        url = redis.start()
        try:
            shared = work / "data"
            first = start_service(shared, url, log_level="warning")
            nodes = [first]
            try:
                user = first.register()
                headers = user.headers
                for index in range(args.runs):
                    print("restart, HEAD ", index, restart_run(first, headers, work, tuspy=False), flush=True)
                for index in range(args.runs):
                    print("restart, tuspy", index, restart_run(first, headers, work, tuspy=True), flush=True)
                second_env = {**first.env, "TUSD_PY_PORT": str(_port())}
                second = Service(
                    env=second_env, data_dir=shared, base_url=f"http://127.0.0.1:{second_env['TUSD_PY_PORT']}",
                    api=tusd_py_process("api", second_env, shared / "api2.log").start(),
                )  # fmt: skip
                nodes.append(second)
                second.api.wait_http(second.base_url + "/healthz")
                results = []
                for index in range(args.runs):
                    result = other_node_run(nodes, headers)
                    results.append(float(result["kill to 200 s"]))
                    print("other node   ", index, result, flush=True)
                print(
                    f"other node: kill to 200, median {statistics.median(results):.2f} s, max {max(results):.2f} s"
                )
            finally:
                for node in nodes:
                    node.stop()
        finally:
            redis.stop()


def _port() -> int:
    from tests.support import free_port

    return free_port()


if __name__ == "__main__":
    main()

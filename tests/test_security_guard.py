"""The HTTP guard on both of uvicorn's HTTP/1.1 protocols (h11 and httptools), over real sockets.

The service tests run whichever protocol ``auto`` picks (httptools when installed);
this one starts a real uvicorn server per protocol in a thread, with a tiny ASGI app,
so the h11 fallback is exercised as well.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tests.support import free_port
from tusd_py.http_guard import GuardLimits, guarded_protocol

LIMITS = GuardLimits(
    header_timeout=1.0, body_idle_timeout=1.0, max_connections=100, max_connections_per_address=3
)
BODY_SEEN: list[int] = []


async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    if scope["type"] != "http":
        return
    total, more = 0, True
    while more:
        message = await receive()  # type: ignore[operator]
        if message["type"] == "http.disconnect":
            BODY_SEEN.append(total)
            return
        total += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


@pytest.fixture(params=[H11Protocol, HttpToolsProtocol], ids=["h11", "httptools"])
def server(request: pytest.FixtureRequest) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=guarded_protocol(request.param, LIMITS), log_level="error"
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(instance.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield port
    instance.should_exit = True
    thread.join(10)


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """Everything the server sent until it closed the socket (fails if it stays open)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {seconds} s")
    return received


def get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return closed_within(sock, 10)


def test_headers_deadline_body_idle_and_caps(server: int) -> None:
    port = server
    # Headers trickled (a line every half second) are still cut at the deadline.
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(3):
            time.sleep(0.5)
            try:
                slow.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        assert closed_within(slow, 10) == b""
    # A stalled body is dropped; the app saw a disconnect after the bytes that came.
    BODY_SEEN.clear()
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        assert closed_within(stalled, 10) == b""
    deadline = time.monotonic() + 5
    while not BODY_SEEN and time.monotonic() < deadline:
        time.sleep(0.02)
    assert BODY_SEEN == [10]
    # Per-address cap: three held, the fourth is told 503; the others are served once freed.
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        assert get(port).startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while (answer := get(port)).startswith(b"HTTP/1.1 503") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 200")

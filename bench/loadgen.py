"""A lean HTTP/1.1 client for the concurrent scenario, so that servers set the pace.

With httpx, 32 clients in the bench process kept it at 94-99 % of one of the two
cores while the API sat at ~50 % and the machine at ~50 % idle: every contender was
measured at the speed of the client. This one writes a request head built from
bytes and the body from one shared buffer, and reads back only the status line
and the headers (a body only when ``Content-Length`` announces one, or a chunked one), on
uvloop. It speaks exactly what the bench needs: keep-alive, ``Content-Length`` bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class Connection:
    """One keep-alive connection; requests on it run one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: bytes) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        parts = urlsplit(base_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=1 << 20)
        return cls(reader, writer, parts.netloc.encode())

    async def request(
        self, method: bytes, path: bytes, headers: bytes = b"", body: bytes | memoryview = b""
    ) -> tuple[int, dict[bytes, bytes]]:
        """(status, lower-cased response headers); ``headers`` is raw ``Name: value\\r\\n`` lines."""
        self._writer.write(
            b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (method, path, self._host, len(body), headers)
        )
        if body:
            self._writer.write(body)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        fields: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":  # @tus/server's replies
            while size := int((await self._reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
                await self._reader.readexactly(size + 2)
            await self._reader.readuntil(b"\r\n")  # the end (no trailers come)
            return status, fields
        length = int(fields.get(b"content-length", b"0"))
        if length:
            await self._reader.readexactly(length)
        return status, fields

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on uvloop (what uvicorn uses too), or asyncio's loop without it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def with_connection(base_url: str, use: Callable[[Connection], Awaitable[T]]) -> T:
    connection = await Connection.open(base_url)
    try:
        return await use(connection)
    finally:
        await connection.close()

"""The floor of HTTP in Python on loopback: a raw-socket PUT/PATCH sink.

No ASGI, no event loop, no parser library: one thread per connection, blocking
``recv_into`` a reused buffer and ``os.write`` into a file, keep-alive, 204 for
each request. It handles only what the bench sends (``Content-Length`` bodies),
which is why it is a floor, not a server. Run as
``python -m bench.raw_sink PORT DIRECTORY``; prints ``ready`` once listening.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import uuid

_RESPONSE = b"HTTP/1.1 204 No Content\r\nUpload-Offset: 0\r\nTus-Resumable: 1.0.0\r\n\r\n"
_BUFFER = 1 << 18


def _serve(connection: socket.socket, directory: str) -> None:
    buffer = bytearray(_BUFFER)
    view = memoryview(buffer)
    pending = b""
    with connection:
        while True:
            while b"\r\n\r\n" not in pending:
                data = connection.recv(65536)
                if not data:
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            fd = os.open(os.path.join(directory, uuid.uuid4().hex), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                first = pending[:length]
                pending = pending[length:]
                if first:
                    os.write(fd, first)
                remaining = length - len(first)
                while remaining:
                    got = connection.recv_into(view, min(_BUFFER, remaining))
                    if not got:
                        return
                    os.write(fd, view[:got])
                    remaining -= got
            finally:
                os.close(fd)
            connection.sendall(_RESPONSE)


def main() -> int:
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    listener = socket.create_server(("127.0.0.1", port), backlog=256)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve, args=(connection, directory), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())

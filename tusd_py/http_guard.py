"""A guard around uvicorn's HTTP protocol: header deadline, body idle timeout, connection caps.

uvicorn has no timeout for receiving a request: ``timeout_keep_alive`` covers only
the idle time between requests and every received byte resets it, so a client
that trickles header lines holds its connection forever. ASGI middleware runs
only once the headers are parsed, so it cannot see such a client. The fix lives
in the protocol object uvicorn creates per connection: :func:`guarded_protocol`
subclasses uvicorn's protocol class (httptools or h11, whichever ``auto`` picks)
and is passed to ``uvicorn.run(http=...)``.

* **Header deadline**: armed when a connection opens and when the first byte of
  a new request arrives; disarmed once the request's headers are parsed (a new
  request cycle exists). On expiry the connection is closed.
* **Body idle timeout**: while a request body is still expected and reading is
  not paused by flow control (the app is slow, not the client), the connection
  is closed after ``body_idle_timeout`` seconds without a byte. The app's
  ``receive()`` then reports a disconnect, and the tus handler keeps the bytes
  that arrived (as tusd does with its network timeout).
* **Connection caps**: past ``max_connections`` in all, or
  ``max_connections_per_address`` from one client address (``None`` behind a
  trusted proxy, where every connection comes from the proxy), a new connection
  gets ``503`` with a JSON body and is closed at once, before it costs anything.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

_BUSY_BODY = b'{"error":{"code":"unavailable","message":"too many connections; retry later"}}'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


REFUSED_LINGER = 0.5
"""Seconds a refused connection stays open after its 503 (the FIN is sent at once)."""


@dataclass(frozen=True)
class GuardLimits:
    header_timeout: float = 5.0
    body_idle_timeout: float = 60.0
    max_connections: int = 2000
    max_connections_per_address: int | None = 100


class _Counts:
    """Open connections per client address, for one server (one event loop)."""

    def __init__(self) -> None:
        self.total = 0
        self.per_address: Counter[str] = Counter()


def guarded_protocol(base: type[asyncio.Protocol], limits: GuardLimits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's protocol class ``base`` that enforces ``limits``."""
    counts = _Counts()

    class GuardedProtocol(base):  # type: ignore[valid-type, misc]
        _guard_limits = limits

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._guard_address = self.client[0] if self.client else ""
            self._guard_counted = False
            self._header_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None
            self._waiting_cycle: object | None = None
            self._last_byte = time.monotonic()
            self._refused = False
            per_address = limits.max_connections_per_address
            if counts.total >= limits.max_connections or (
                per_address is not None and counts.per_address[self._guard_address] >= per_address
            ):
                self._refuse(transport)
                return
            counts.total += 1
            counts.per_address[self._guard_address] += 1
            self._guard_counted = True
            self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if getattr(self, "_guard_counted", False):
                self._guard_counted = False
                counts.total -= 1
                counts.per_address[self._guard_address] -= 1
                if counts.per_address[self._guard_address] <= 0:
                    del counts.per_address[self._guard_address]
            self._cancel_timers()
            super().connection_lost(exc)

        def _refuse(self, transport: Any) -> None:
            """503, then FIN; the socket closes a moment later. Closing at once with the
            client's request still unread would send an RST that can discard the 503."""
            self._refused = True
            transport.write(BUSY_RESPONSE)
            if transport.can_write_eof():
                transport.write_eof()
            self.loop.call_later(REFUSED_LINGER, transport.close)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # never parsed, never reaches the app
            self._last_byte = time.monotonic()
            if self._header_timer is None and self._between_requests():
                self._arm_header_deadline()
            super().data_received(data)
            if (
                self._header_timer is not None
                and self.cycle is not None
                and self.cycle is not self._waiting_cycle
            ):
                self._header_timer.cancel()  # a new request's headers are complete
                self._header_timer = None
            if self._body_timer is None and self._body_expected():
                self._body_timer = self.loop.call_later(limits.body_idle_timeout, self._check_body)

        # -- header deadline ---------------------------------------------------

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm_header_deadline(self) -> None:
            self._waiting_cycle = self.cycle
            self._header_timer = self.loop.call_later(limits.header_timeout, self._headers_too_slow)

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        # -- body idle timeout -------------------------------------------------

        def _body_expected(self) -> bool:
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete and cycle.more_body

        def _check_body(self) -> None:
            self._body_timer = None
            if self.transport.is_closing() or not self._body_expected():
                return
            if self.flow.read_paused:  # the app is not reading: not the client's fault
                self._last_byte = time.monotonic()
            idle = time.monotonic() - self._last_byte
            if idle >= limits.body_idle_timeout:
                self.transport.close()
                return
            self._body_timer = self.loop.call_later(limits.body_idle_timeout - idle, self._check_body)

        def _cancel_timers(self) -> None:
            for name in ("_header_timer", "_body_timer"):
                timer = getattr(self, name, None)
                if timer is not None:
                    timer.cancel()
                    setattr(self, name, None)

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedProtocol


def uvicorn_protocol(limits: GuardLimits) -> type[asyncio.Protocol]:
    """The guarded version of the protocol uvicorn's ``http="auto"`` would choose."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return guarded_protocol(AutoHTTPProtocol, limits)

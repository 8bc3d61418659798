"""SIGTERM without losing uploads: uvicorn's graceful shutdown, plus a drain.

uvicorn stops accepting connections on SIGTERM and waits up to
``timeout_graceful_shutdown`` for the open ones; but a PATCH keeps reading its
body for as long as the client keeps sending, so it would be cancelled at the
deadline without an answer (the batch not yet written lost with it). The
drain is called first: through the upload locks' interrupt (the mechanism a
request asking for a busy upload uses), every running PATCH stops reading,
saves what it has and answers 204 with its offset; the client resumes on
another node. Then uvicorn's own shutdown runs as usual.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import uvicorn

logger = logging.getLogger("tusd_py")

SHUTDOWN_GRACE = 5.0
"""Seconds a stopping API node waits for its requests (uvicorn's ``timeout_graceful_shutdown``)."""


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` that calls ``drain`` as its shutdown begins."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], None]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            self._drain()
        except Exception:  # shutting down goes on regardless
            logger.exception("draining the upload locks failed")
        await super().shutdown(sockets)

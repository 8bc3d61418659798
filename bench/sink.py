"""The baseline: a bare ASGI endpoint that streams a PUT body into a file.

No framework, no protocol, no auth, no locking: the floor that a tus endpoint on
the same uvicorn cannot beat. Run as ``uvicorn bench.sink:app``.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

SINK_DIR = os.environ.get("BENCH_SINK_DIR") or tempfile.mkdtemp(prefix="tusd-bench-sink-")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = os.path.join(SINK_DIR, uuid.uuid4().hex)
    with open(path, "wb") as target:  # noqa: ASYNC230 (the bare baseline writes inline)
        while True:
            message = await receive()
            if message.get("body"):
                target.write(message["body"])
            if not message.get("more_body"):
                break
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})

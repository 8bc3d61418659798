"""uvicorn's access log, without query strings.

An event-stream ticket travels in the query (``/events?ticket=…``: EventSource
cannot send headers), and uvicorn logs the whole request target. The filter
below replaces every query with ``?[redacted]`` before a line is written, so
no ticket or token ever reaches a log file.
"""

from __future__ import annotations

import copy
import logging
from typing import Any


class RedactQuery(logging.Filter):
    """Rewrites the path argument of uvicorn's access records (``%s - "%s %s HTTP/%s" %d``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def redact(target: str) -> str:
    path, sep, _ = target.partition("?")
    return f"{path}?[redacted]" if sep else path


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with :class:`RedactQuery` on the access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQuery}
    config["handlers"]["access"].setdefault("filters", []).append("redact_query")
    return config

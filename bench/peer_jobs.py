"""The small-task job as Celery and RQ run it: the same work as tusd-py's ``uppercase``
(decode UTF-8 with surrogateescape, upper-case, encode), fsync and rename into place.

Standard library only: it is imported by the peers' own venv (see :mod:`bench.peers`),
never by the project's. Each job returns its own start and finish times, so every
system's drain rate comes from the same clocks (first start to last finish).
"""

from __future__ import annotations

import os
import time


def upper_file(source: str, target: str) -> tuple[float, float]:
    started = time.time()
    with open(source, "rb") as src:
        data = src.read()
    text = data.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")
    temporary = f"{target}.tmp"
    with open(temporary, "wb") as dst:
        dst.write(text)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(temporary, target)
    return started, time.time()

"""The JWT signing key: from the environment, or generated once per deployment.

Every process of one deployment (API nodes, workers) must sign and verify with
the same key. A generated key is written create-exclusive with mode 0600, so
when several processes start together exactly one writes it and all read it.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

KEY_BYTES = 48


def load_or_create_secret(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_complete(path)
    key = secrets.token_urlsafe(KEY_BYTES).encode()
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def _read_complete(path: Path, wait: float = 2.0) -> bytes:
    """Another process may have created the file a moment ago: wait for its bytes."""
    deadline = time.monotonic() + wait
    while True:
        key = path.read_bytes().strip()
        if len(key) >= 32 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if len(key) < 32:
        raise RuntimeError(f"{path} holds a key shorter than 32 bytes; delete it or set TUSD_PY_JWT_SECRET")
    return key

"""Everything under the data dir is private to the service's user.

The data dir holds password hashes and token digests (Redis's append-only and
RDB files), the JWT key, uploads and results. Each ``tusd-py`` role sets the
process umask to 077 before it creates anything, so every file is 0600 and every
directory 0700 — including the files a child creates (the embedded
redis-server, processing children) and those created by code that passes no
mode. The data dir itself is made 0700 even if it existed with looser bits.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077


def make_private(data_dir: Path) -> None:
    """Set umask 077 for this process and its children, and make ``data_dir`` 0700."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if data_dir.stat().st_uid == os.getuid():
        data_dir.chmod(0o700)

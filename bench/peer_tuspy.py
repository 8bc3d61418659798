"""tuspyserver (a FastAPI router) as an ingest peer: ``uvicorn bench.peer_tuspy:app``,
run from the peers' venv (:func:`bench.peers.peers_python`), never the project's.
Uploads go to ``$BENCH_PEER_DIR``; no auth, no hooks: the peer's own floor."""

from __future__ import annotations

import os
import tempfile

from fastapi import FastAPI
from tuspyserver import create_tus_router

app = FastAPI()
app.include_router(
    create_tus_router(
        prefix="files", files_dir=os.environ.get("BENCH_PEER_DIR") or tempfile.mkdtemp(prefix="tuspy-")
    )
)

"""The ingest scenario's peers, started for one run and stopped after it.

* ``raw socket sink``: :mod:`bench.raw_sink`, the floor of HTTP in Python on loopback;
* ``tuspyserver``: :mod:`bench.peer_tuspy` on uvicorn, from the peers' venv
  (:func:`bench.peers.peers_python`, never the project's venv);
* ``@tus/server``: :file:`bench/peer_tus_node.mjs` with its FileStore, installed by npm
  into a folder the bench owns outside the checkout (``$TUSD_PY_BENCH_NODE_DIR`` or
  ``~/.cache/tusd-py-bench/tus-node``), only when npm is there.

A peer that cannot be set up is left out with a one-line reason (printed and put in
the report), never silently. ``TUSD_PY_BENCH_INGEST_PEERS=raw`` runs the raw-socket sink
only (the smoke test: no venv or npm install on a fresh machine); it says so in a row.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import ChildProcess, free_port

REPO = Path(__file__).resolve().parent.parent
NODE_PACKAGES = {"@tus/server": "2.4.5", "@tus/file-store": "2.1.1"}


@dataclass(frozen=True)
class Peer:
    name: str
    url: str  # a PUT sink's URL, or a tus server's creation URL
    tus: bool
    files: Path  # where it stores what it receives


def node_modules() -> Path:
    """The bench's own node_modules with @tus/server, installed on first use."""
    home = Path(os.environ.get("TUSD_PY_BENCH_NODE_DIR", Path.home() / ".cache/tusd-py-bench/tus-node"))
    home.mkdir(parents=True, exist_ok=True)
    manifest = json.dumps({"name": "tusd-py-bench-peers", "private": True, "dependencies": NODE_PACKAGES})
    marker = home / "node_modules" / ".bench-installed"
    if not (marker.exists() and marker.read_text() == manifest):
        (home / "package.json").write_text(manifest)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=home, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        marker.write_text(manifest)
    return home / "node_modules"


def _wait_port(port: int, child: ChildProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if child.process is not None and child.process.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} did not come up (see {child.log_path})")


def _start(stack: ExitStack, name: str, command: list[str], port: int, workdir: Path, **kw: object) -> None:
    child = ChildProcess(name, command, workdir / f"{name}.log", cwd=REPO, **kw).start()  # type: ignore[arg-type]
    stack.callback(child.stop)
    _wait_port(port, child)


@contextmanager
def raw_sink(workdir: Path) -> Iterator[str]:
    """The raw-socket sink alone (for the concurrent scenario); yields its URL."""
    with ExitStack() as stack:
        port = free_port()
        _start(stack, "raw-sink", [sys.executable, "-m", "bench.raw_sink", str(port), str(workdir / "raw")],
               port, workdir)  # fmt: skip
        yield f"http://127.0.0.1:{port}/"


@contextmanager
def ingest_peers(workdir: Path) -> Iterator[tuple[list[Peer], list[str]]]:
    """(the peers that run, reasons for those that could not)."""
    peers: list[Peer] = []
    missing: list[str] = []
    only_raw = os.environ.get("TUSD_PY_BENCH_INGEST_PEERS", "all") == "raw"
    with ExitStack() as stack:
        peers.append(Peer("raw socket sink", stack.enter_context(raw_sink(workdir)), False, workdir / "raw"))
        if only_raw:
            missing.append("tuspyserver, @tus/server: TUSD_PY_BENCH_INGEST_PEERS=raw")
        else:
            _start_tus_peers(stack, workdir, peers, missing)
        for reason in missing:
            print(f"ingest peer left out: {reason}", file=sys.stderr, flush=True)
        yield peers, missing


def _start_tus_peers(stack: ExitStack, workdir: Path, peers: list[Peer], missing: list[str]) -> None:
    try:
        from bench.peers import peers_python  # here: bench.peers imports the scenarios

        python = str(peers_python())
        port = free_port()
        clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        _start(
            stack, "tuspyserver",
            [python, "-m", "uvicorn", "bench.peer_tuspy:app", "--port", str(port), "--log-level", "warning"],
            port, workdir, env={**clean, "BENCH_PEER_DIR": str(workdir / "tuspy")}, inherit_env=False,
        )  # fmt: skip
        peers.append(Peer("tuspyserver", f"http://127.0.0.1:{port}/files", True, workdir / "tuspy"))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        missing.append(f"tuspyserver: {str(error).splitlines()[0]}")
    if shutil.which("npm") and shutil.which("node"):
        try:
            modules = node_modules()
            port = free_port()
            (workdir / "tus-node").mkdir(exist_ok=True)
            _start(
                stack, "tus-node",
                ["node", str(REPO / "bench" / "peer_tus_node.mjs"), str(port), str(workdir / "tus-node")],
                port, workdir, env={"BENCH_NODE_MODULES": str(modules)},
            )  # fmt: skip
            peers.append(Peer("@tus/server", f"http://127.0.0.1:{port}/files", True, workdir / "tus-node"))
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            missing.append(f"@tus/server: {str(error).splitlines()[0]}")
    else:
        missing.append("@tus/server: npm or node not found")

"""``tusd-py api`` on every core: several uvicorn processes on one port.

Python runs one thread of bytecode at a time, and under load one API process spends
about a core on its event loop (32 uploads at once: ~90 % of a core, see
``bench/RESULTS.md``), so one process per core is what lets the API use the machine.
With more than one (``TUSD_PY_API_PROCESSES``), this parent binds one ``SO_REUSEPORT``
socket per process on the port and starts each process with its socket inherited; the
kernel spreads new connections over the sockets by their addresses. (One shared socket
was tried first: whichever loop woke first took most of a burst of 32 connections, and
kept them for their uploads.) Each process is a node of its own, as separate machines
behind a load balancer are (its lock owner name ``host:port/slot``, heartbeat,
connection caps, caches); uploads, locks, sessions and tasks live in Redis and the data
directory already, so nothing else changes.

The parent serves nothing itself. It restarts a node that dies with ``serve``'s crash
policy (:func:`tusd_py.supervisor.look_after`); the new process takes the slot's name,
so its predecessor's locks are free at once, and the connections the kernel gave that
slot's socket meanwhile wait in its queue (the parent holds it). It passes SIGTERM and
SIGINT on as SIGTERM (each node drains its uploads, :mod:`tusd_py.graceful`), and a
``kill -9`` of it takes the nodes with it (PR_SET_PDEATHSIG). The nodes' Prometheus
samples meet in a private directory of its own (:func:`metrics_dir`, :mod:`tusd_py.metrics`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from tusd_py.graceful import SHUTDOWN_GRACE
from tusd_py.settings import Settings
from tusd_py.supervisor import TICK, Child, StartError, look_after, port_problem, stop_children

logger = logging.getLogger("tusd_py.api")

NODE_READY_AFTER = 2.0
"""A node that runs this long has started well (the shared port cannot tell them apart)."""
BACKLOG = 2048
"""uvicorn's default listen backlog."""
STOP_SLACK = 5.0
"""Seconds past the nodes' own grace before a lingering node is killed."""


METRICS_PREFIX = "tusd-py-api-metrics-"


def metrics_dir(base: Path | None = None) -> Path:
    """A new private directory for this parent's Prometheus samples, on local disk (never
    the shared data volume: another host's processes may have the same pids), removed at
    exit. It is named after this parent's pid, and those of this user's parents that are
    gone (a ``kill -9`` removes nothing) are removed first."""
    base = base or Path(tempfile.gettempdir())
    for stale in base.glob(f"{METRICS_PREFIX}*-*"):
        pid = stale.name.removeprefix(METRICS_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and _ours(stale):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-", dir=base))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _ours(path: Path) -> bool:
    info = path.lstat()
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


class ApiNodes:
    """The parent of ``count`` API processes; :meth:`run` returns the exit status."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.stopping = False
        self.nodes: list[Child] = []

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            logger.info("%s: stopping the API processes", signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        problem = port_problem(self.settings.host, self.settings.port)
        if problem is not None:
            sys.exit(f"tusd-py api: {problem}")
        listeners = [self._listen() for _ in range(self.count)]
        shared = metrics_dir()
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
        self.nodes = [
            Child(
                f"api process {slot}",
                env,
                lambda: False,
                command=[sys.executable, "-m", "tusd_py", "api", "--node", str(slot), "--listen-fd", str(fd)],
                pass_fds=(fd,),
                ready_after=NODE_READY_AFTER,
            )
            for slot, fd in enumerate(listener.fileno() for listener in listeners)
        ]
        logger.info("API on %s:%s in %d processes", self.settings.host, self.settings.port, self.count)
        try:
            for node in self.nodes:
                node.spawn()
            while not self.stopping:
                time.sleep(TICK)
                for node in self.nodes:
                    look_after(node, self.stopping)
            return 0
        except StartError as error:
            logger.error("%s", error)
            return 3  # as a single API process that could not start
        finally:
            stop_children(self.nodes, SHUTDOWN_GRACE + STOP_SLACK)
            for listener in listeners:
                listener.close()
            shutil.rmtree(shared, ignore_errors=True)

    def _listen(self) -> socket.socket:
        """One node's socket, bound as uvicorn binds its own, in the port's reuse group."""
        host = self.settings.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, self.settings.port))
        listener.listen(BACKLOG)
        listener.set_inheritable(True)
        return listener

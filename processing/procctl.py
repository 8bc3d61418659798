"""Process-lifetime helpers shared by everything that starts a child: die with the
parent (``PR_SET_PDEATHSIG``, race-free) and kill a whole process group.

The app's supervisor and embedded Redis can use :func:`parent_death_hook` too: it is
the one PDEATHSIG helper of the code base (``processing`` imports nothing of the app,
so the app imports it from here).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _load_prctl() -> Callable[..., int]:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl  # glibc
    except OSError:
        return ctypes.CDLL(None, use_errno=True).prctl  # e.g. musl: libc is already loaded


# Resolved in the parent: a preexec hook must do as little as possible after fork().
_prctl = _load_prctl()


def die_with_parent(parent_pid: int) -> None:
    """In a freshly forked child: get SIGKILL when the parent dies.

    ``PR_SET_PDEATHSIG`` only covers a parent that dies *after* the call, so the
    parent's pid is checked afterwards: if it already died, the child exits at once.
    """
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def parent_death_hook() -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess``/``asyncio`` that ties the child to this process."""
    return functools.partial(die_with_parent, os.getpid())


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init, so that
    their ``PR_SET_PDEATHSIG`` (or our own group kill) still reaches them."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def kill_group(pgid: int) -> None:
    """SIGKILL a process group; quiet when it is already gone.

    Called even after the group's leader exited, to reach any grandchild it left
    behind; pids are allocated sequentially, so reuse within that window is
    practically impossible.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)

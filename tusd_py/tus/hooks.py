"""What the application plugs into the protocol handler (tusd's hooks, in-process).

The handler knows nothing of users or tasks: it asks ``authenticate`` who is
calling, lets ``pre_create`` refuse a creation (by raising
:class:`~tusd_py.tus.protocol.TusError`), and tells the application when an
upload is finished or terminated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from .store import UploadInfo

Authenticate = Callable[[Request], Awaitable[str | None]]
PreCreate = Callable[[Request, UploadInfo], Awaitable[None]]
UploadEvent = Callable[[UploadInfo], Awaitable[None]]


@dataclass(frozen=True)
class Hooks:
    """``authenticate`` returns the caller's owner id, or None (answered 401).

    ``pre_create`` runs before anything is stored or any byte is read.
    ``post_finish`` runs exactly once per completed, non-partial upload, under
    the upload's lock; if it raises, the request answers 500 and the next
    HEAD or PATCH on the upload runs it again. ``post_terminate`` runs after a
    DELETE removed the upload (its errors are logged, the DELETE stands).
    """

    authenticate: Authenticate
    pre_create: PreCreate | None = None
    post_finish: UploadEvent | None = None
    post_terminate: UploadEvent | None = None

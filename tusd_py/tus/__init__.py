"""tus 1.0.0 resumable uploads for Starlette, modelled on tusd's pkg/handler.

Compose a store, a locker and the application's hooks into a :class:`TusHandler`
and mount its ``routes``. This package imports nothing else of tusd-py.
"""

from .filestore import FileStore
from .handler import TusHandler
from .hooks import Hooks
from .locker import Locker, LockTimeout, RedisLocker
from .protocol import TUS_VERSION, TusError
from .quota import QuotaExceeded, RedisQuota
from .store import Store, UploadInfo

__all__ = [
    "TUS_VERSION",
    "FileStore",
    "Hooks",
    "LockTimeout",
    "Locker",
    "QuotaExceeded",
    "RedisLocker",
    "RedisQuota",
    "Store",
    "TusError",
    "TusHandler",
    "UploadInfo",
]

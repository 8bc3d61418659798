"""tus 1.0.0 resumable uploads for Starlette, modelled on tusd's pkg/handler.

Compose a store, a locker, a quota (pending caps), optionally a storage quota
(:class:`StorageQuota`, over everything an owner keeps) and the application's hooks into a
:class:`TusHandler` and mount its ``routes``. This package imports nothing else of
tusd-py; only :mod:`.redislocker` and :mod:`.redisquota` import ``redis``.
"""

from .errors import BackendUnavailable, TusError
from .filestore import FileStore
from .handler import TusHandler
from .hooks import Hooks
from .locker import Locker, LockTimeout
from .memory import MemoryLocker, MemoryQuota, MemoryStorageQuota
from .protocol import TUS_VERSION
from .quota import Quota, QuotaExceeded, StorageQuota
from .redislocker import RedisLocker
from .redisquota import RedisQuota
from .store import Store, UploadInfo

__all__ = [
    "TUS_VERSION",
    "BackendUnavailable",
    "FileStore",
    "Hooks",
    "LockTimeout",
    "Locker",
    "MemoryLocker",
    "MemoryQuota",
    "MemoryStorageQuota",
    "Quota",
    "QuotaExceeded",
    "RedisLocker",
    "RedisQuota",
    "StorageQuota",
    "Store",
    "TusError",
    "TusHandler",
    "UploadInfo",
]

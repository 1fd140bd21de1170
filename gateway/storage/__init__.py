"""Everything the gateway keeps on disk, and nothing about what it means.

``durable`` holds the file-system steps every journal needs: a directory
lock, complete appends, data sync and an atomic file replacement.
``batch_file`` is the append-only file of checksummed batches that a
journal is made of (the order journal in :mod:`gateway.orderflow.journal`
is one).  ``session_store`` is the FIX session store on disk,
:class:`FileStore`, and :func:`open_store`, which opens a session's store by
backend name.

The store interface it implements is the FIX layer's
(:class:`gateway.fix.store.SessionStore`); this package imports it from
there, never the other way round.
"""

from gateway.storage.batch_file import (
    BatchFile,
    BatchFileError,
    BatchFileLockedError,
    DamagedError,
    WrongMagicError,
)
from gateway.storage.session_store import (
    BACKENDS,
    FileStore,
    StoreCorruptError,
    StoreLockedError,
    open_store,
    session_dirname,
)

__all__ = [
    "BACKENDS",
    "BatchFile",
    "BatchFileError",
    "BatchFileLockedError",
    "DamagedError",
    "FileStore",
    "StoreCorruptError",
    "StoreLockedError",
    "WrongMagicError",
    "open_store",
    "session_dirname",
]

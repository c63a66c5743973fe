"""Where a run's records go: the :class:`~.base.Store` protocol, the embedded chDB store of the local runner
(:class:`~.chdb_store.ChdbStore`), the migration runner for ``sql/local`` (:mod:`.migrations`), batching
(:class:`~.writer.TableWriter`) and the rows of the engine's records (:mod:`.rows`).

Import :mod:`.chdb_store` only where chDB is wanted: it loads the embedded ClickHouse engine (~700 MB).
"""

from .base import Column, Columns, Store, StoreError, StoreLockedError, rows_of
from .migrations import MigrationError
from .writer import TableWriter, WriteError

__all__ = [
    "Column",
    "Columns",
    "MigrationError",
    "Store",
    "StoreError",
    "StoreLockedError",
    "TableWriter",
    "WriteError",
    "rows_of",
]

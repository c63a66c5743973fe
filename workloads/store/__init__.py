"""Where a run's records go: the :class:`~.base.Store` protocol, the embedded chDB store of the local runner
(:class:`~.chdb_store.ChdbStore`), the ClickHouse-server store of the cluster
(:class:`~.clickhouse_server.ClickHouseServerStore`), the migration runner for ``sql/runtime``
(:mod:`.migrations`, with :mod:`.dialect` for older servers), batching (:class:`~.writer.TableWriter`), the
rows of the engine's records (:mod:`.rows`) and of market data (:mod:`.market`).

Import :mod:`.chdb_store` only where chDB is wanted: it loads the embedded ClickHouse engine (~700 MB).
"""

from .base import Column, Columns, Store, StoreError, StoreLockedError, StoreUnavailableError, rows_of
from .migrations import MigrationError
from .writer import TableWriter, WriteError

__all__ = [
    "Column",
    "Columns",
    "MigrationError",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreUnavailableError",
    "TableWriter",
    "WriteError",
    "rows_of",
]

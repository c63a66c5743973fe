"""L2 order books kept in sync with Binance's snapshot + diff protocol, and market-data quality checks.

:class:`BookSet` holds one tick-indexed book per symbol and applies micro-batches of canonical events
(:data:`~tradeplane.engine.events.EVENT_DTYPE`) with one numba call each, emitting a
:func:`~tradeplane.engine.events.book_top_dtype` row per message plus gap records and resync requests.
:class:`QualityMonitor` adds clock-offset/latency flags and the rolling gap ratio. docs/book.md explains
the protocol, the gap handling and the thresholds.
"""

from __future__ import annotations

from .kernels import (
    COUNTER_NAMES,
    GAP_CHAIN,
    GAP_SNAPSHOT_TOO_OLD,
    GAP_TRUNCATED,
    RESYNC_BUFFER_OVERFLOW,
    RESYNC_GAP,
    RESYNC_GAP_RATIO,
    RESYNC_NO_SNAPSHOT,
    RESYNC_OFF_TICK,
)
from .quality import QualityConfig, QualityMonitor, QualityReport
from .sync import (
    GAP_DTYPE,
    RESYNC_DTYPE,
    UNSYNCED_REASONS,
    BookBatch,
    BookCapacityError,
    BookConfig,
    BookLevels,
    BookSet,
)

__all__ = [
    "COUNTER_NAMES",
    "GAP_CHAIN",
    "GAP_DTYPE",
    "GAP_SNAPSHOT_TOO_OLD",
    "GAP_TRUNCATED",
    "RESYNC_BUFFER_OVERFLOW",
    "RESYNC_DTYPE",
    "RESYNC_GAP",
    "RESYNC_GAP_RATIO",
    "RESYNC_NO_SNAPSHOT",
    "RESYNC_OFF_TICK",
    "UNSYNCED_REASONS",
    "BookBatch",
    "BookCapacityError",
    "BookConfig",
    "BookLevels",
    "BookSet",
    "QualityConfig",
    "QualityMonitor",
    "QualityReport",
]

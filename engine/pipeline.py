"""The market-data pipeline: quality marks → order books → features, one call per micro-batch.

The same object serves replay, the local runner and the decide workload, so the order of operations
(quality flags before the book, so tops carry them; features only from synced tops) is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .book import BookBatch, BookConfig, BookSet, QualityConfig, QualityMonitor, QualityReport
from .events import EventArray, SymbolTable
from .features import FeatureBatch, FeatureEngine, FeatureSpec


@dataclass(frozen=True)
class PipelineConfig:
    book: BookConfig = field(default_factory=BookConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    #: None: books and quality only (no feature rows).
    features: FeatureSpec | None = field(default_factory=FeatureSpec)


@dataclass(frozen=True)
class PipelineBatch:
    book: BookBatch
    features: FeatureBatch | None


class MarketDataPipeline:
    """Stateful across batches: feed every batch of a stream, in order."""

    def __init__(self, config: PipelineConfig | None = None, symbols: SymbolTable | None = None) -> None:
        self.config = config or PipelineConfig()
        self.symbols = symbols
        self.books = BookSet(self.config.book)
        self.quality = QualityMonitor(self.config.quality, symbols)
        self.features = FeatureEngine(self.config.features) if self.config.features is not None else None

    def process(self, events: EventArray) -> PipelineBatch:
        """Run one micro-batch (events in arrival order; DEGRADED flags are set on it in place)."""
        book = self.quality.process(self.books, events)
        feats = self.features.update_book_batch(events, book) if self.features is not None else None
        return PipelineBatch(book, feats)

    def reports(self) -> list[QualityReport]:
        """Quality per symbol seen so far."""
        n = len(self.symbols) if self.symbols is not None else self.books.n_symbols
        return [self.quality.report(self.books, s) for s in range(n)]


@dataclass
class ColumnStats:
    """Running statistics of one numeric column, updated per batch with vectorized numpy."""

    count: int = 0
    nan: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, values: npt.NDArray[np.float64]) -> None:
        finite = values[np.isfinite(values)]
        self.nan += int(values.size - finite.size)
        if finite.size:
            self.count += int(finite.size)
            self.total += float(finite.sum())
            self.total_sq += float(np.square(finite).sum())
            self.low = min(self.low, float(finite.min()))
            self.high = max(self.high, float(finite.max()))

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    @property
    def std(self) -> float:
        if self.count < 2:
            return float("nan")
        var = (self.total_sq - self.count * self.mean**2) / (self.count - 1)
        return float(np.sqrt(max(var, 0.0)))


def update_column_stats(stats: dict[str, ColumnStats], rows: EventArray, skip: tuple[str, ...] = ()) -> None:
    """Accumulate every float column of a structured array (scalar fields only) into ``stats``."""
    names = rows.dtype.names or ()
    for name in names:
        sub = rows.dtype.fields[name][0] if rows.dtype.fields else None
        if name in skip or sub is None or sub.shape or sub.kind != "f":
            continue
        stats.setdefault(name, ColumnStats()).add(np.asarray(rows[name], dtype=np.float64))

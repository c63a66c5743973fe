"""Market features: book features per top, bar clocks, rolling bar features; online and batch.

Pure and I/O-free like the rest of the engine. Inputs are event batches (``EVENT_DTYPE``) and the book tops
``engine.book`` produced for them; outputs are preallocated structured arrays (``schema``). Every kernel
is ``numba.njit(cache=True, error_model="numpy")`` over a micro-batch (no exception can leave a kernel: a
division by zero is inf/NaN, and every feature guards its denominators) and carries its state in
per-symbol arrays, so the same code serves a live micro-batch and a whole offline day with identical
results. Feature definitions, units and windows: ``docs/features.md``.
"""

from __future__ import annotations

from .bar_features import BarFeatures, BarFeatureSpec, compute_bar_features
from .batch import compute_features, concat_batches, max_row_difference
from .book_features import BookFeatures, BookFeatureSpec, compute_book_features
from .clocks import BarClock, ClockSpec, bars_from_klines, build_bars
from .online import DEFAULT_CLOCKS, FeatureBatch, FeatureEngine, FeatureSpec
from .schema import (
    BAR_BOOK_INVALID,
    BAR_CAPPED,
    BAR_DTYPE,
    BAR_FEATURE_DTYPE,
    BAR_FILLED,
    BAR_GAP,
    BAR_NO_PRICE,
    BOOK_FEATURE_DTYPE,
    FEAT_AFTER_SKIP,
    FEAT_DEGRADED,
    FEAT_FIRST,
    MAX_HORIZONS,
)
from .volatility import YEAR_NS

__all__ = [
    "BAR_BOOK_INVALID",
    "BAR_CAPPED",
    "BAR_DTYPE",
    "BAR_FEATURE_DTYPE",
    "BAR_FILLED",
    "BAR_GAP",
    "BAR_NO_PRICE",
    "BOOK_FEATURE_DTYPE",
    "DEFAULT_CLOCKS",
    "FEAT_AFTER_SKIP",
    "FEAT_DEGRADED",
    "FEAT_FIRST",
    "MAX_HORIZONS",
    "YEAR_NS",
    "BarClock",
    "BarFeatureSpec",
    "BarFeatures",
    "BookFeatureSpec",
    "BookFeatures",
    "ClockSpec",
    "FeatureBatch",
    "FeatureEngine",
    "FeatureSpec",
    "bars_from_klines",
    "build_bars",
    "compute_bar_features",
    "compute_book_features",
    "compute_features",
    "concat_batches",
    "max_row_difference",
]

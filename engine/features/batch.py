"""The offline path: features of a whole day in one call.

Why it is the online engine fed once rather than separate vectorised code: two implementations of every
feature would drift, and "a decision made live replays bit for bit offline" is a promise about *one*
code path. The kernels are already single passes over arrays, so feeding a day at once costs the same as
feeding it in pieces, minus the per-call overhead. What the parity test checks is therefore that no state
is lost or double-counted at micro-batch boundaries.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..events import EventArray
from ._state import concat_rows
from .online import FeatureBatch, FeatureEngine, FeatureSpec
from .schema import BAR_DTYPE, BAR_FEATURE_DTYPE, BOOK_FEATURE_DTYPE


def compute_features(
    events: EventArray,
    tops: EventArray | None = None,
    top_event_index: npt.NDArray[np.int64] | None = None,
    spec: FeatureSpec | None = None,
) -> FeatureBatch:
    """Every feature row of a whole stream (events plus the book tops aligned to them)."""
    return FeatureEngine(spec).update(events, tops, top_event_index)


def concat_batches(batches: list[FeatureBatch], top_offsets: list[int]) -> FeatureBatch:
    """Join the outputs of consecutive online batches into one, as if the stream had been fed at once.

    ``top_offsets[i]`` is the number of tops fed before batch ``i`` (so ``book_top_index`` becomes an
    index into the concatenated tops).
    """
    if len(batches) != len(top_offsets):
        raise ValueError(f"{len(batches)} batches but {len(top_offsets)} top offsets")
    if not batches:
        raise ValueError("concat_batches needs at least one batch")
    names = list(batches[0].bars)
    return FeatureBatch(
        book=concat_rows([b.book for b in batches], BOOK_FEATURE_DTYPE),
        book_top_index=np.concatenate([b.book_top_index + off for b, off in zip(batches, top_offsets, strict=True)]),
        bars={n: concat_rows([b.bars[n] for b in batches], BAR_DTYPE) for n in names},
        bar_features={n: concat_rows([b.bar_features[n] for b in batches], BAR_FEATURE_DTYPE) for n in names},
    )


def max_row_difference(a: EventArray, b: EventArray) -> float:
    """Largest difference between two row arrays of the same dtype, for replay-versus-live checks.

    Integer fields count as infinitely different when unequal; float fields (sub-arrays included) compare
    by ``|x − y| / max(1, |x|)``, and a NaN on one side only is infinitely different. 0.0 means identical.
    Returns ``inf`` when the lengths or dtypes differ.
    """
    if a.dtype != b.dtype or a.shape != b.shape:
        return float("inf")
    worst = 0.0
    for name in a.dtype.names or ():
        x = a[name]
        y = b[name]
        if x.dtype.kind != "f":
            if not np.array_equal(x, y):
                return float("inf")
            continue
        nan_x = np.isnan(x)
        if not np.array_equal(nan_x, np.isnan(y)):
            return float("inf")
        ok = ~nan_x
        if ok.any():
            d = np.abs(x[ok] - y[ok]) / np.maximum(1.0, np.abs(x[ok]))
            worst = max(worst, float(d.max()))
    return worst

"""Out-of-fold predictions: every tested sample is scored by a model that never saw it nor its label window.

Why OOF and not a single split: calibrators, thresholds and the search objective are all fitted on these
predictions, so they must be honest for every sample they use. The splits come from ``engine.splits``
(purged walk-forward or purged k-fold with embargo), which guarantees that no training label interval
overlaps a test sample's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..splits import Split

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: (train features, train labels, test features) → P(y = 1) of the test rows.
FitPredict = Callable[[FloatArray, npt.NDArray[np.int8], FloatArray], FloatArray]


@dataclass(frozen=True)
class OutOfFold:
    """``p`` has one entry per sample, NaN where no split tested the sample (e.g. walk-forward's first block).

    ``fold`` is the split that tested each sample (−1 for none); ``splits`` are the splits used, in order.
    """

    p: FloatArray
    fold: IntArray
    splits: tuple[Split, ...]

    @property
    def tested(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.fold >= 0)


def out_of_fold(
    features: FloatArray,
    y: npt.NDArray[np.int8],
    splits: Sequence[Split],
    fit_predict: FitPredict,
    *,
    on_fold: Callable[[int, int], None] | None = None,
) -> OutOfFold:
    """Fit on each split's train rows, predict its test rows. Each sample may be tested by one split only.

    ``on_fold(i, n)`` is called after each fold (progress reporting).
    """
    n = y.shape[0]
    p = np.full(n, np.nan)
    fold = np.full(n, -1, dtype=np.int64)
    for i, split in enumerate(splits):
        if len(split.train) == 0 or len(split.test) == 0:
            raise ValueError(f"split {i} has an empty train or test set")
        if np.any(fold[split.test] >= 0):
            raise ValueError(f"split {i} tests samples already tested by another split (use CPCV paths instead)")
        p[split.test] = fit_predict(features[split.train], y[split.train], features[split.test])
        fold[split.test] = i
        if on_fold is not None:
            on_fold(i + 1, len(splits))
    return OutOfFold(p, fold, tuple(splits))

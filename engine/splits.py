"""Cross-validation splitters for overlapping labels: purged k-fold with embargo, walk-forward, and
combinatorial purged CV (López de Prado, *Advances in Financial Machine Learning*, ch. 7 and 12).

Why: a label's outcome interval [t0, t1] (from its decision time to its barrier hit or horizon) overlaps its
neighbours'. A training sample whose interval overlaps a test sample's interval has seen part of the test
outcome — leakage that makes out-of-sample metrics optimistic. *Purging* drops such training samples;
the *embargo* also drops training samples that start shortly after a test block, because features built on
trailing windows (volatility, flow) are serially correlated with the test block's last outcomes.

Conventions: samples are indexed in time order of ``t0`` (the caller sorts); ``t1 ≥ t0``; times are any
monotonic integers (ns). A training sample j is purged if ``t0_j ≤ t1_i`` and ``t1_j ≥ t0_i`` for some test
sample i (closed intervals), and embargoed if ``t0_j`` falls in ``(end, end + embargo]`` where ``end`` is the
largest ``t1`` of a contiguous test block.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """One train/test split as index arrays into the (time-sorted) samples."""

    train: IntArray
    test: IntArray
    #: CPCV only: which test groups this split holds out (empty otherwise).
    test_groups: tuple[int, ...] = ()


def _check(t0: npt.ArrayLike, t1: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    a = np.asarray(t0, dtype=np.int64)
    b = np.asarray(t1, dtype=np.int64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"t0 and t1 must be 1-D and equally long, got shapes {a.shape} and {b.shape}")
    if np.any(b < a):
        i = int(np.argmax(b < a))
        raise ValueError(f"t1 < t0 at sample {i}: t0={a[i]}, t1={b[i]}")
    if np.any(np.diff(a) < 0):
        i = int(np.argmax(np.diff(a) < 0)) + 1
        raise ValueError(f"samples must be sorted by t0; sample {i} starts before sample {i - 1}")
    return a, b


def _blocks(test: IntArray) -> list[IntArray]:
    """Split sorted test indices into runs of consecutive indices (contiguous blocks)."""
    if len(test) == 0:
        return []
    cuts = np.nonzero(np.diff(test) != 1)[0] + 1
    return np.split(test, cuts)


def purged_train(t0: IntArray, t1: IntArray, test: IntArray, embargo: int) -> IntArray:
    """Training indices: everything not in ``test``, minus purged and embargoed samples.

    Overlap with the *union* of test intervals is tested exactly: the test intervals are merged into
    disjoint spans, and each candidate is checked against the span that could contain its start.
    """
    n = len(t0)
    keep = np.ones(n, dtype=bool)
    keep[test] = False
    if len(test) == 0:
        return np.nonzero(keep)[0]
    # Merge the test intervals into disjoint spans.
    order = np.argsort(t0[test], kind="stable")
    s0, s1 = t0[test][order], t1[test][order]
    span_end = np.maximum.accumulate(s1)
    new_span = np.ones(len(s0), dtype=bool)
    new_span[1:] = s0[1:] > span_end[:-1]
    starts = s0[new_span]
    ends = np.maximum.reduceat(s1, np.nonzero(new_span)[0])
    # A candidate [a, b] overlaps span k iff a ≤ end_k and b ≥ start_k. With disjoint sorted spans, the
    # first span ending at or after a is the only one that can overlap without containing a later start.
    k = np.searchsorted(ends, t0, side="left")
    hit = k < len(starts)
    overlaps = np.zeros(n, dtype=bool)
    overlaps[hit] = t1[hit] >= starts[k[hit]]
    keep &= ~overlaps
    if embargo > 0:
        for block in _blocks(np.sort(test)):
            end = int(t1[block].max())
            keep &= ~((t0 > end) & (t0 <= end + embargo))
    return np.nonzero(keep)[0]


def purged_kfold(t0: npt.ArrayLike, t1: npt.ArrayLike, n_splits: int = 5, embargo: int = 0) -> list[Split]:
    """k contiguous test folds in time order; each trains on the rest, purged and embargoed."""
    a, b = _check(t0, t1)
    if not 2 <= n_splits <= len(a):
        raise ValueError(f"n_splits must be in [2, {len(a)}], got {n_splits}")
    if embargo < 0:
        raise ValueError(f"embargo must be ≥ 0, got {embargo}")
    folds = np.array_split(np.arange(len(a), dtype=np.int64), n_splits)
    return [Split(purged_train(a, b, test, embargo), test) for test in folds]


def walk_forward(
    t0: npt.ArrayLike,
    t1: npt.ArrayLike,
    n_splits: int = 5,
    *,
    expanding: bool = True,
    train_size: int | None = None,
) -> list[Split]:
    """Train only on the past: the series is cut into ``n_splits + 1`` blocks; split i tests on block i+1.

    Expanding: train on all earlier blocks; rolling: on the last ``train_size`` samples before the test.
    Earlier samples whose label interval reaches into the test block are purged. No embargo is needed:
    no training sample follows the test block.
    """
    a, b = _check(t0, t1)
    if not 1 <= n_splits < len(a):
        raise ValueError(f"n_splits must be in [1, {len(a) - 1}], got {n_splits}")
    if not expanding and (train_size is None or train_size < 1):
        raise ValueError("rolling walk-forward needs train_size ≥ 1")
    blocks = np.array_split(np.arange(len(a), dtype=np.int64), n_splits + 1)
    out = []
    for i in range(1, n_splits + 1):
        test = blocks[i]
        first = int(test[0])
        lo = 0 if expanding else max(0, first - int(train_size or 0))
        candidates = np.arange(lo, first, dtype=np.int64)
        train = candidates[b[candidates] < a[first]]  # purge: the label must end before the test starts
        out.append(Split(train, test))
    return out


def combinatorial_purged(
    t0: npt.ArrayLike, t1: npt.ArrayLike, n_groups: int = 6, n_test_groups: int = 2, embargo: int = 0
) -> list[Split]:
    """Every choice of ``n_test_groups`` of ``n_groups`` contiguous groups as the test set (C(N, k) splits).

    Each group is tested in C(N−1, k−1) splits, giving that many full backtest paths (see
    :func:`cpcv_paths`).
    """
    a, b = _check(t0, t1)
    if not 1 <= n_test_groups < n_groups <= len(a):
        raise ValueError(f"need 1 ≤ n_test_groups < n_groups ≤ n_samples, got {n_test_groups}, {n_groups}")
    groups = np.array_split(np.arange(len(a), dtype=np.int64), n_groups)
    out = []
    for combo in itertools.combinations(range(n_groups), n_test_groups):
        test = np.concatenate([groups[g] for g in combo])
        out.append(Split(purged_train(a, b, test, embargo), test, combo))
    return out


def cpcv_paths(n_groups: int, n_test_groups: int) -> list[list[int]]:
    """Backtest paths of CPCV: path p takes, for each group g, the p-th split that tests g.

    Returns, per path, the split index used for each group (so out-of-fold predictions can be stitched
    into ``C(N−1, k−1)`` complete, non-overlapping histories).
    """
    combos = list(itertools.combinations(range(n_groups), n_test_groups))
    per_group: list[list[int]] = [[] for _ in range(n_groups)]
    for s, combo in enumerate(combos):
        for g in combo:
            per_group[g].append(s)
    n_paths = len(per_group[0])
    return [[per_group[g][p] for g in range(n_groups)] for p in range(n_paths)]


def iter_splits(splits: list[Split]) -> Iterator[tuple[IntArray, IntArray]]:
    """(train, test) pairs, the shape scikit-learn's ``cv=`` accepts."""
    for s in splits:
        yield s.train, s.test

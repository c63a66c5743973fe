"""Splitters against a brute-force reference on random interval sets, and leakage checks on constructed
overlapping labels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.splits import combinatorial_purged, cpcv_paths, purged_kfold, walk_forward


def _reference_train(t0: np.ndarray, t1: np.ndarray, test: np.ndarray, embargo: int) -> np.ndarray:
    """O(n²) definition: not in test, overlapping no test interval, not starting within the embargo after
    the end of any contiguous test block."""
    test_set = set(test.tolist())
    blocks: list[list[int]] = []
    for i in sorted(test_set):
        if blocks and blocks[-1][-1] == i - 1:
            blocks[-1].append(i)
        else:
            blocks.append([i])
    ends = [max(int(t1[i]) for i in blk) for blk in blocks]
    keep = []
    for j in range(len(t0)):
        if j in test_set:
            continue
        if any(t0[j] <= t1[i] and t1[j] >= t0[i] for i in test_set):
            continue
        if any(end < t0[j] <= end + embargo for end in ends):
            continue
        keep.append(j)
    return np.array(keep, dtype=np.int64)


@st.composite
def intervals(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(min_value=6, max_value=60))
    gaps = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    t0 = np.cumsum(np.array(gaps, dtype=np.int64))
    return t0, t0 + np.array(lengths, dtype=np.int64)


@settings(max_examples=150, deadline=None)
@given(intervals(), st.integers(2, 5), st.integers(0, 8))
def test_purged_kfold_equals_brute_force(iv: tuple[np.ndarray, np.ndarray], k: int, embargo: int) -> None:
    t0, t1 = iv
    k = min(k, len(t0))
    splits = purged_kfold(t0, t1, k, embargo)
    assert np.array_equal(np.sort(np.concatenate([s.test for s in splits])), np.arange(len(t0)))
    for s in splits:
        assert np.array_equal(s.train, _reference_train(t0, t1, s.test, embargo))


@settings(max_examples=80, deadline=None)
@given(intervals(), st.integers(3, 6), st.integers(1, 2), st.integers(0, 8))
def test_cpcv_equals_brute_force(iv: tuple[np.ndarray, np.ndarray], n: int, k: int, embargo: int) -> None:
    t0, t1 = iv
    splits = combinatorial_purged(t0, t1, n, k, embargo)
    assert len(splits) == math.comb(n, k)
    for s in splits:
        assert np.array_equal(s.train, _reference_train(t0, t1, s.test, embargo))


def test_no_training_label_overlaps_a_test_label_on_constructed_overlaps() -> None:
    # 1000 samples one second apart with 60-second labels: every label overlaps its 59 neighbours.
    t0 = np.arange(1000, dtype=np.int64) * 1_000_000_000
    t1 = t0 + 60 * 1_000_000_000
    for s in purged_kfold(t0, t1, 5, embargo=60 * 1_000_000_000):
        for i in (s.test.min(), s.test.max()):
            assert not np.any((t0[s.train] <= t1[i]) & (t1[s.train] >= t0[i]))
        first, last = s.test.min(), s.test.max()
        assert not np.any((s.train > first - 61) & (s.train < first))  # purged before the fold
        assert not np.any((s.train > last) & (s.train <= last + 120))  # purged (60) + embargoed (60) after
        if last < 999:
            assert last + 121 in s.train


def test_walk_forward_trains_only_on_the_past_and_purges() -> None:
    t0 = np.arange(100, dtype=np.int64)
    t1 = t0 + 5
    expanding = walk_forward(t0, t1, 4)
    rolling = walk_forward(t0, t1, 4, expanding=False, train_size=15)
    for s in expanding + rolling:
        assert s.train.max() < s.test.min()
        assert np.all(t1[s.train] < t0[s.test.min()])
    assert [len(s.train) for s in expanding] == sorted(len(s.train) for s in expanding)
    assert all(len(s.train) <= 15 for s in rolling)
    assert expanding[0].train[0] == 0 and rolling[-1].train[0] > 0


def test_cpcv_paths_cover_every_group_once_per_path() -> None:
    n, k = 6, 2
    splits = combinatorial_purged(np.arange(60), np.arange(60), n, k)
    paths = cpcv_paths(n, k)
    assert len(paths) == math.comb(n - 1, k - 1)
    for path in paths:
        for group, split_index in enumerate(path):
            assert group in splits[split_index].test_groups
    used = list(itertools.chain.from_iterable(paths))
    assert len(used) == len(paths) * n


@pytest.mark.parametrize(
    ("t0", "t1", "message"),
    [([0, 1], [1], "equally long"), ([0, 1], [1, 0], "t1 < t0 at sample 1"), ([2, 1], [3, 3], "sorted by t0")],
)
def test_bad_inputs_name_the_sample(t0: list[int], t1: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        purged_kfold(t0, t1, 2)

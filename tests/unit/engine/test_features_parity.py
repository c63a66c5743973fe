"""Online (micro-batch by micro-batch) and batch (whole stream at once) feature paths agree.

The same stream is fed to a fresh :class:`FeatureEngine` in one call and, separately, cut at random
points into micro-batches of 1 to a few thousand events (tops go with the batch that holds their
event). Every output — book rows, their top indices, every clock's bars and bar features — must agree to
1e-9 (in practice they are bit-identical: all state lives in carried arrays).

Real data: the Binance USD-M BTCUSDT capture (599k events: depth diffs with a REST snapshot, bookTicker,
trades), decoded and applied to ``BookSet`` to get real book tops, including the unsynced tops before the
snapshot. Synthetic data adds what the capture lacks: several symbols, MARK / OPEN_INTEREST /
LIQUIDATION events, crossed tops and long silences.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from tradeplane.engine.book import BookSet
from tradeplane.engine.events import EventArray, SymbolTable
from tradeplane.engine.features import (
    FEAT_AFTER_SKIP,
    FEAT_FIRST,
    BarFeatureSpec,
    BookFeatureSpec,
    ClockSpec,
    FeatureBatch,
    FeatureEngine,
    FeatureSpec,
    compute_features,
    concat_batches,
    max_row_difference,
)
from tradeplane.engine.features.synthetic import synthetic_stream
from tradeplane.engine.replay import read_capture

S = 1_000_000_000
TOL = 1e-9
SMALL_WINDOWS = BarFeatureSpec(
    horizons=(1, 5, 10),
    rv_short=10,
    rv_long=60,
    rv_pct_lookback=50,
    atr_n=14,
    bb_n=20,
    squeeze_lookback=30,
    kyle_n=20,
    amihud_n=20,
    vpin_n=10,
    flow_n=10,
    liq_n=10,
)
SPEC = FeatureSpec(
    book=BookFeatureSpec(levels=10, void_ticks=10, tick_sizes={0: 0.1, 1: 0.1, 2: 0.1}),
    clocks=(
        ClockSpec.time("1s", S, price="mid"),
        ClockSpec.time("250ms", S // 4),
        ClockSpec.volume("vol", 250_000.0, cap_ns=5 * S, price="mid"),
        ClockSpec.count("c50", 50),
    ),
    bars=SMALL_WINDOWS,
)


def random_cuts(n: int, seed: int, max_len: int) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) ranges covering 0..n, lengths uniform in 1..max_len (some single events)."""
    rng = np.random.default_rng(seed)
    cuts = [0]
    while cuts[-1] < n:
        cuts.append(min(n, cuts[-1] + int(rng.integers(1, max_len + 1))))
    return list(itertools.pairwise(cuts))


def feed_online(events: EventArray, tops: EventArray, tei: np.ndarray, seed: int, max_len: int) -> FeatureBatch:
    engine = FeatureEngine(SPEC)
    batches: list[FeatureBatch] = []
    offsets: list[int] = []
    for lo, hi in random_cuts(len(events), seed, max_len):
        a, b = (int(x) for x in np.searchsorted(tei, [lo, hi]))
        batches.append(engine.update(events[lo:hi], tops[a:b], tei[a:b] - lo))
        offsets.append(a)
    return concat_batches(batches, offsets)


def assert_same(whole: FeatureBatch, online: FeatureBatch) -> None:
    assert max_row_difference(whole.book, online.book) <= TOL
    np.testing.assert_array_equal(whole.book_top_index, online.book_top_index)
    for name in whole.bars:
        assert len(whole.bars[name]) > 0, name
        assert max_row_difference(whole.bars[name], online.bars[name]) <= TOL, name
        assert max_row_difference(whole.bar_features[name], online.bar_features[name]) <= TOL, name


@pytest.fixture(scope="module")
def usdm(shared_dir: Path) -> tuple[EventArray, EventArray, np.ndarray]:
    decoded = read_capture(shared_dir / "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz", SymbolTable())
    events = decoded.events
    batch = BookSet().apply(events)
    return events, batch.tops, batch.top_event_index


def test_real_usdm_online_equals_batch(usdm: tuple[EventArray, EventArray, np.ndarray]) -> None:
    events, tops, tei = usdm
    assert len(events) > 500_000 and len(tops) > 6_000
    assert (tops["synced"] == 0).any(), "the capture starts before its snapshot: some tops are unsynced"
    whole = compute_features(events, tops, tei, SPEC)
    # unsynced tops produce no rows, and the first row after them says so
    assert len(whole.book) == int(((tops["synced"] == 1) & (tops["crossed"] == 0)).sum())
    assert whole.book["flags"][0] == FEAT_FIRST | FEAT_AFTER_SKIP
    assert np.isfinite(whole.book["ofi_n"][1:]).all()
    for seed, max_len in ((1, 1_000), (2, 20_000), (3, 150)):
        assert_same(whole, feed_online(events, tops, tei, seed, max_len))


def test_real_usdm_book_and_features_online_end_to_end(usdm: tuple[EventArray, EventArray, np.ndarray]) -> None:
    """Live shape: each micro-batch goes through BookSet.apply, then FeatureEngine.update_book_batch."""
    events, tops, tei = usdm
    whole = compute_features(events, tops, tei, SPEC)
    books = BookSet()
    engine = FeatureEngine(SPEC)
    batches: list[FeatureBatch] = []
    offsets: list[int] = []
    n_tops = 0
    for lo, hi in random_cuts(len(events), 4, 2_000):
        book_batch = books.apply(events[lo:hi])
        batches.append(engine.update_book_batch(events[lo:hi], book_batch))
        offsets.append(n_tops)
        n_tops += len(book_batch.tops)
    assert n_tops == len(tops)
    assert_same(whole, concat_batches(batches, offsets))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_online_equals_batch(seed: int) -> None:
    s = synthetic_stream(80_000, n_symbols=3, seed=seed, p_long_gap=0.0002)
    whole = compute_features(s.events, s.tops, s.top_event_index, SPEC)
    assert np.isfinite(whole.bar_features["1s"]["funding_delta_bps"]).any()
    assert np.isfinite(whole.bar_features["1s"]["liq_intensity"]).any()
    assert_same(whole, feed_online(s.events, s.tops, s.top_event_index, seed, 3_000))
    assert_same(whole, feed_online(s.events, s.tops, s.top_event_index, seed + 10, 40))


def test_trades_only_stream_needs_no_tops() -> None:
    s = synthetic_stream(20_000, seed=9)
    spec = FeatureSpec(clocks=(ClockSpec.time("1s", S),), bars=SMALL_WINDOWS)
    out = FeatureEngine(spec).update(s.events)
    assert len(out.book) == 0 and len(out.bars["1s"]) > 10
    assert np.isnan(out.bars["1s"]["mid_close"]).all()

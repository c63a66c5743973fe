"""The book kernels against the synthetic market's true book: two independent implementations of the
same L2 state (the generator's grid and the BookSet's tick window) must agree level by level, in futures
and spot sequencing, and after a dropped diff they must agree again once the resync snapshot arrives."""

from __future__ import annotations

import numpy as np
import pytest

from tradeplane.engine import events as evk
from tradeplane.engine.book import BookConfig, BookSet
from tradeplane.engine.synth import SyntheticMarket, SyntheticMarketConfig

LEVELS = 200  # compare well inside the 1000-level snapshot


def _stream_until_snapshot(events: np.ndarray) -> np.ndarray:
    kinds = events["kind"] & evk.KIND_MASK
    return events[: int(np.argmax(kinds == evk.SNAPSHOT))]


def _assert_same_book(book: BookSet, market: SyntheticMarket) -> None:
    got = book.levels(0)
    bp, bq, ap, aq = market.book()
    np.testing.assert_allclose(got.bid_px[:LEVELS], bp[:LEVELS], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.bid_qty[:LEVELS], bq[:LEVELS])
    np.testing.assert_allclose(got.ask_px[:LEVELS], ap[:LEVELS], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.ask_qty[:LEVELS], aq[:LEVELS])


@pytest.mark.parametrize("futures", [True, False], ids=["usdm", "spot"])
def test_book_equals_the_true_synthetic_book(futures: bool) -> None:
    market = SyntheticMarket(SyntheticMarketConfig(futures=futures), seed=17)
    book = BookSet(BookConfig(levels=10, tick_sizes={0: 0.1}))
    batch = book.apply(market.advance(90))
    assert len(batch.gaps) == 0 and book.is_synced(0)
    assert batch.tops["synced"][-1] == 1 and not batch.tops["crossed"].any()
    # Bring the generator to a flush boundary so its true book is exactly what the diffs announced.
    book.apply(_stream_until_snapshot(market.resync()))
    _assert_same_book(book, market)


def test_dropped_diff_is_caught_and_the_resync_snapshot_restores_the_true_book() -> None:
    market = SyntheticMarket(SyntheticMarketConfig(futures=True), seed=23)
    events = market.advance(30)
    kinds = events["kind"] & evk.KIND_MASK
    msg_ends = np.nonzero((kinds == evk.DEPTH) & (events["kind"] & evk.LAST_IN_MSG != 0))[0]
    start, end = msg_ends[100] + 1, msg_ends[101] + 1  # the 102nd diff message
    damaged = np.concatenate([events[:start], events[end:]])
    book = BookSet(BookConfig(levels=10, tick_sizes={0: 0.1}))
    batch = book.apply(damaged)
    # Reported at the first event of the message that breaks the chain: the next diff after the hole.
    damaged_kinds = damaged["kind"] & evk.KIND_MASK
    next_diff = start + int(np.argmax(damaged_kinds[start:] == evk.DEPTH))
    assert len(batch.gaps) == 1 and int(batch.gaps["event_index"][0]) == next_diff
    assert not book.is_synced(0) and len(batch.resync_requests) >= 1
    book.apply(market.resync())  # stream to the next flush, then the fresh snapshot
    assert book.is_synced(0)
    _assert_same_book(book, market)

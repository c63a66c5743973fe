"""The desk's market view fed in pieces (``observe`` per md fetch, ``settle`` at the tick) equals the view fed
each tick's batch whole (``update``), on a real USD-M capture.

Why it matters: live decide hands the view every fetch as it arrives so that a tick computes only the last
fetch's features (engine/runtime/market.py); a decision must not depend on where the fetches cut the stream.
Compared after every tick: every value a decision reads — tops, book and bar features on two clocks, bar ends,
funding, ingest lag, feed gap ratio — and the slippage fit (which refits only at ``settle``). The reverse check
shows the test can fail: settling after every piece (refits whenever a piece tips the fitter over) makes the
slippage fit differ.
"""

from __future__ import annotations

import itertools
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tradeplane.engine.book import BookSet
from tradeplane.engine.events import SymbolTable, book_top_dtype, empty_events
from tradeplane.engine.replay import read_capture
from tradeplane.engine.runtime.market import MarketView, clock_for
from tradeplane.engine.runtime.slippage import SlippageFitConfig

_CAPTURE = "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz"
_N_EVENTS = 200_000
_MS = 1_000_000
_TICK_NS = 100 * _MS
#: small thresholds, so the fitter measures and refits many times within the stretch
_FIT = SlippageFitConfig(capacity=1500, refit_every=8, min_samples=20, process_events=3000, max_waiting_tops=200)
_CLOCKS = (clock_for("time", 1000, 0.0), clock_for("volume", 0, 250_000.0))

Rows = npt.NDArray[np.void]
State = tuple[Any, ...]  #: what :func:`_state` reads, in its order (index 8: refits so far)


@cache
def _market(shared: str) -> tuple[Rows, Rows]:
    events = read_capture(Path(shared) / _CAPTURE, SymbolTable()).events[:_N_EVENTS]
    return events, BookSet().apply(events).tops


@pytest.fixture(scope="module")
def market(shared_dir: Path) -> tuple[Rows, Rows]:
    return _market(str(shared_dir))


def _view() -> MarketView:
    return MarketView(1, {c.name: c for c in _CLOCKS}, _FIT)


def _cut(events: Rows, tops: Rows, bounds: npt.NDArray[np.int64]) -> list[tuple[Rows, Rows]]:
    """Events and tops received in each (bounds[i], bounds[i + 1]] of local time."""
    e = np.searchsorted(events["ingest_ts"], bounds, side="right")
    t = np.searchsorted(tops["ingest_ts"], bounds, side="right")
    return [(events[a:b], tops[c:d]) for (a, b), (c, d) in zip(itertools.pairwise(e), itertools.pairwise(t),
                                                                 strict=True)]  # fmt: skip


def _ticks(events: Rows) -> npt.NDArray[np.int64]:
    t0 = int(events["ingest_ts"][0]) - 1
    return np.arange(t0, int(events["ingest_ts"][-1]) + _TICK_NS, _TICK_NS, dtype=np.int64)


def _state(view: MarketView) -> State:
    """Everything a decision reads from the view, NaN made comparable."""

    def same(x: float) -> object:
        return "nan" if isinstance(x, float) and math.isnan(x) else x

    fit = view.slippage.fitted(0)
    curves = [tuple(map(same, view.slippage.curve(0, q)[1])) for q in (0.5, 0.9)] if fit is not None else []
    return (
        view.events,
        same(view.ingest_lag_ms),
        view.gap_ratio_pct(),
        [tuple(map(same, (t.bid, t.bid_qty, t.ask, t.ask_qty, t.exchange_ts, t.synced))) for t in view.tops],
        {k: same(v) for k, v in view.book[0].items()},
        {c: {k: same(v) for k, v in view.bars[c][0].items()} for c in view.clock_names},
        {c: list(view.bar_end[c]) for c in view.clock_names},
        [same(f) for f in view.funding],
        view.slippage.fits,
        curves,
    )


def _run(events: Rows, tops: Rows, pieces: int, seed: int, settle_each_piece: bool = False) -> list[State]:
    """The view's state after each tick; each tick's batch fed in up to ``pieces`` receive-time pieces."""
    view = _view()
    rng = np.random.default_rng(seed)
    states: list[State] = []
    ticks = _ticks(events)
    for (lo, hi), (ev, tp) in zip(itertools.pairwise(ticks), _cut(events, tops, ticks), strict=True):
        if pieces == 1 or not ev.shape[0]:
            view.update(ev, tp)
        else:
            inner = np.unique(rng.integers(lo + 1, hi, size=pieces - 1))
            for e, t in _cut(ev, tp, np.concatenate(([lo], inner, [hi]))):
                view.observe(e, t)
                if settle_each_piece:
                    view.settle()
            view.settle()
        states.append(_state(view))
    return states


@pytest.mark.parametrize(("pieces", "seed"), [(3, 1), (20, 2)])
def test_a_view_fed_in_pieces_equals_the_view_fed_whole_batches(market: tuple[Rows, Rows], pieces: int,
                                                                   seed: int) -> None:  # fmt: skip
    events, tops = market
    whole = _run(events, tops, 1, 0)
    assert len(whole) > 500
    last = whole[-1]
    assert last[8] > 10, "the fitter refitted too rarely for the comparison to bite"
    bar = last[5][_CLOCKS[0].name]
    assert sum(v != "nan" for v in bar.values()) > 0.7 * len(bar), "bar features not warmed up"
    assert _run(events, tops, pieces, seed) == whole


def test_settling_every_piece_changes_the_slippage_fit_so_the_comparison_can_fail(
    market: tuple[Rows, Rows],
) -> None:
    events, tops = market
    whole = _run(events, tops, 1, 0)
    naive = _run(events, tops, 20, 2, settle_each_piece=True)
    assert naive != whole
    assert [s[:8] for s in naive] == [s[:8] for s in whole]  # only the fit (refit timing) differs


def _received(ms: list[tuple[float, int]]) -> tuple[Rows, Rows]:
    """Tops of instrument 0 at (local ms, synced), each with the (otherwise empty) event it came with."""
    out = np.zeros(len(ms), book_top_dtype(10))
    out["ingest_ts"] = [round(t * _MS) for t, _ in ms]
    out["exchange_ts"] = out["ingest_ts"]
    out["synced"] = [s for _, s in ms]
    out["bid_px"], out["ask_px"] = 100.0, 100.1
    events = empty_events(len(ms))
    events["ingest_ts"] = events["exchange_ts"] = out["ingest_ts"]
    return events, out


def test_gaps_count_in_each_tops_own_minute_however_the_batch_straddles_minutes() -> None:
    minute = 60_000.0
    rows = [(minute - 30, 1), (minute - 20, 0), (minute - 10, 0), (minute + 10, 0), (minute + 20, 1),
            (2 * minute + 5, 1), (2 * minute + 6, 1)]  # fmt: skip
    whole, pieces = _view(), _view()
    whole.update(*_received(rows[:5]))
    for r in rows[:5]:
        pieces.observe(*_received([r]))
    pieces.settle()
    assert whole.gap_ratio_pct() == pieces.gap_ratio_pct() == pytest.approx(100.0 * 3 / 5)
    whole.update(*_received(rows[5:]))
    pieces.update(*_received(rows[5:]))
    # the window is now (minute 1, minute 2): 1 gap in 2 tops, then 0 in 2; minute 0's two gaps are gone
    assert whole.gap_ratio_pct() == pieces.gap_ratio_pct() == pytest.approx(100.0 * 1 / 4)

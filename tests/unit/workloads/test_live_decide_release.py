"""Live decide's market release (LiveFeed) and wake-ups (MarketClock): no fixed hold-back, a bounded wait
for a silent symbol, and the same desk batches as the backtester over the same events."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest

from tradeplane.engine.events import EVENT_DTYPE, EventArray
from tradeplane.engine.runtime.instruments import instrument_table
from tradeplane.engine.sim.runner import BacktestConfig, Context, MarketBatch, run_backtest
from tradeplane.workloads.bus.mdbatch import MdBatch
from tradeplane.workloads.live.market import LiveFeed, MarketClock
from tradeplane.workloads.local.source import synthetic_market

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
INSTRUMENTS = {("binance-usdm", "AAA"): 0, ("binance-usdm", "BBB"): 1}


def _events(ts_ms: list[float]) -> EventArray:
    ev = np.zeros(len(ts_ms), EVENT_DTYPE)
    ev["ingest_ts"] = [T0 + round(t * MS) for t in ts_ms]
    ev["exchange_ts"] = ev["ingest_ts"] - MS
    return ev


def _batch(symbol: str, ts_ms: list[float], seq: int = 0) -> MdBatch:
    return MdBatch("binance-usdm", symbol, seq, 1, _events(ts_ms))


class _Wall:
    def __init__(self, ms: float) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return T0 + round(self.ms * MS)


def test_one_symbol_is_released_at_once_with_no_hold_back() -> None:
    feed = LiveFeed({("binance-usdm", "AAA"): 0}, max_wait_ns=50 * MS, clock=_Wall(10))
    feed.add(_batch("AAA", [1, 2, 3]))
    out = feed.take()
    assert out["ingest_ts"].tolist() == _events([1, 2, 3])["ingest_ts"].tolist()
    assert feed.frontier == T0 + 3 * MS
    assert feed.newest_exchange_ts == T0 + 2 * MS


def test_a_symbol_that_never_spoke_holds_the_first_release_for_max_wait_only() -> None:
    wall = _Wall(10)
    feed = LiveFeed(INSTRUMENTS, max_wait_ns=50 * MS, clock=wall)
    feed.add(_batch("AAA", [1, 2]))
    assert feed.take().shape[0] == 0  # BBB may still be on its way
    wall.ms = 52  # 50 ms of wall time past the first event received
    assert feed.take().shape[0] == 2


def test_release_runs_to_the_oldest_active_symbol_then_past_a_silent_one() -> None:
    wall = _Wall(20)
    feed = LiveFeed(INSTRUMENTS, max_wait_ns=50 * MS, clock=wall)
    feed.add(_batch("AAA", [1, 5, 9, 15]))
    feed.add(_batch("BBB", [2, 6]))
    out = feed.take()
    assert (out["ingest_ts"] - T0).tolist() == [x * MS for x in (1, 2, 5, 6)]  # merged, up to BBB's newest
    assert out["symbol"].tolist() == [0, 1, 0, 1]
    wall.ms = 57  # BBB silent for 51 ms: it no longer holds AAA back
    assert (feed.take()["ingest_ts"] - T0).tolist() == [9 * MS, 15 * MS]


def test_events_of_a_symbol_behind_the_release_are_moved_up_to_it_and_counted() -> None:
    wall = _Wall(100)
    feed = LiveFeed(INSTRUMENTS, max_wait_ns=50 * MS, clock=wall)
    feed.add(_batch("AAA", [60, 70]))
    feed.add(_batch("BBB", [1]))
    assert feed.take().shape[0] == 3  # BBB went silent at 1 ms: released to AAA's 70 ms
    feed.add(_batch("BBB", [40, 80], seq=1))  # 40 ms arrives after 70 ms went out
    assert feed.late == 1
    wall.ms = 200
    out = feed.take()
    assert (out["ingest_ts"] - T0).tolist() == [70 * MS, 80 * MS]
    assert bool(np.all(np.diff(out["ingest_ts"]) >= 0))


def _synthetic() -> tuple[EventArray, BacktestConfig]:
    inst = instrument_table([("binance-usdm", "BTCUSDT")])
    events = synthetic_market(inst, seconds=20.0, seed=4).events
    return events, BacktestConfig(contracts={0: inst[0].contract(leverage=1.0)}, batch_ms=100.0, top_levels=5)


def _digest(rows: np.ndarray) -> str:
    """Of every field's values (not the rows' raw bytes: an aligned dtype's padding bytes are uninitialised)."""
    h = hashlib.blake2b(digest_size=8)
    for name in rows.dtype.names or ():
        h.update(np.ascontiguousarray(rows[name]).tobytes())
    return h.hexdigest()


class _Recorder:
    """Each desk call: its time, sizes, the touch, and digests of the events' and tops' values."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, tuple[float, float], str, str]] = []

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        digest = [_digest(a) for a in (batch.events, batch.tops)]
        self.calls.append((batch.now, batch.events.shape[0], batch.tops.shape[0], ctx.touch(0), *digest))


@pytest.mark.parametrize("pieces", [36, 2000])
def test_market_clock_fed_in_pieces_makes_the_backtests_batches_as_soon_as_data_passes_each_tick(
    pieces: int,
) -> None:
    """36 pieces: several ticks per fetch; 2000: several fetches per tick, the book catching up between ticks
    (what the tick then processes is only the last fetch's) — the same batches either way."""
    events, cfg = _synthetic()
    ref = _Recorder()
    run_backtest(events, ref, cfg)
    got = _Recorder()
    feed = LiveFeed({("binance-usdm", "BTCUSDT"): 0}, max_wait_ns=50 * MS, clock=lambda: 0)
    clock = MarketClock(feed, cfg, got.on_batch)
    bounds = np.linspace(0, events.shape[0], pieces + 1).astype(int)
    ahead = 0  # fetches after which the book had run past the last tick
    for seq, (a, b) in enumerate(itertools.pairwise(bounds)):
        piece = events[a:b].copy()
        feed.add(MdBatch("binance-usdm", "BTCUSDT", seq, 1, piece))
        clock.advance()
        last = int(piece["ingest_ts"][-1])
        assert not got.calls or got.calls[-1][0] <= last  # no tick runs ahead of the data
        assert ref.calls[len(got.calls)][0] > last  # and every tick the data has passed has run
        assert clock.run is not None
        ahead += bool(got.calls) and clock.run.sim.now > got.calls[-1][0]
    t_end = int(events["ingest_ts"][-1])
    expect = [c for c in ref.calls if c[0] <= t_end]
    assert len(expect) > 150
    assert got.calls == expect
    assert ahead > (pieces // 2 if pieces > len(expect) else 0)

"""Live decide's desk observes the market between ticks (``MarketClock(..., observe=desk.on_market)``) and
decides exactly as the backtester's desk, which gets each tick's batch whole.

The desk is the example USD-M strategy opened up to decide every tick (tests/unit/engine/runtime/support.py),
with the venue refusing every order so both runs stay order-less (live decide's market clock never works
orders itself). Compared: every signal (probability, expected return, utility, costs, feature
contributions, decision) and every rejection, in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from tests.unit.engine.runtime.support import INSTRUMENTS, open_desk
from tradeplane.engine.runtime.desk import DeskRuntime
from tradeplane.engine.sim.runner import Context, MarketBatch, run_backtest
from tradeplane.workloads.bus.mdbatch import MdBatch
from tradeplane.workloads.live.market import LiveFeed, MarketClock
from tradeplane.workloads.local.runner import backtest_config
from tradeplane.workloads.local.source import synthetic_market

MS = 1_000_000


class _Refused:
    """The desk behind a venue that refuses every order; counts the events its wake-ups carried."""

    def __init__(self, desk: DeskRuntime) -> None:
        self.desk = desk
        self.tick_events = 0

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        setattr(ctx, "order_refusal", lambda: "venue_down")  # noqa: B010
        self.tick_events += int(batch.events.shape[0])
        self.desk.on_batch(ctx, batch)


def _first_difference(have: Sequence[object], want: Sequence[object]) -> str | None:
    """The first item of ``have`` unlike ``want``'s, shown short (repr: NaN features compare equal; a plain
    ``==`` on ~1 MB of reprs would have pytest diff them for minutes)."""
    for i, (h, w) in enumerate(zip(have, want, strict=False)):
        if repr(h) != repr(w):
            return f"item {i}: {h!r:.600} != {w!r:.600}"
    return None


@pytest.mark.parametrize("pieces", [500, 6000])
def test_a_desk_observing_between_ticks_decides_as_the_backtests_desk(pieces: int) -> None:
    """500 pieces: about one fetch per tick; 6000: several fetches per tick, features computed between."""
    events = synthetic_market(INSTRUMENTS, seconds=120.0, seed=8).events
    ref = _Refused(open_desk())
    cfg = backtest_config(ref.desk, INSTRUMENTS, initial_balance=10_000.0, seed=0)
    run_backtest(events, ref, cfg)

    got = _Refused(open_desk())
    feed = LiveFeed({("binance-usdm", "BTCUSDT"): 0}, max_wait_ns=50 * MS, clock=lambda: 0)
    clock = MarketClock(feed, cfg, got.on_batch, got.desk.on_market)
    for seq, (a, b) in enumerate(itertools.pairwise(np.linspace(0, events.shape[0], pieces + 1).astype(int))):
        feed.add(MdBatch("binance-usdm", "BTCUSDT", seq, 1, events[a:b].copy()))
        clock.advance()
    assert clock.run is not None
    clock.run.advance(clock.run.t_end)  # the ticks up to the last event (the backtest's finish runs them too)

    want, have = ref.desk.outbox, got.desk.outbox
    assert len(want.signals) > 500
    assert len(want.rejections) > 10  # entries the refusing venue turned away
    # the backtest's finish also runs the wake-up after the last event, which a live clock still waits for
    last_tick = clock.run.now
    assert len(have.signals) == len([s for s in want.signals if s.infer_ts <= last_tick]) >= len(want.signals) - 1
    assert _first_difference(have.signals, want.signals) is None
    assert _first_difference(have.rejections, want.rejections) is None
    assert len(have.rejections) >= len(want.rejections) - 1
    assert ref.desk.view.events == events.shape[0]
    at_end = int(np.count_nonzero(events["ingest_ts"] == events["ingest_ts"][-1]))  # left for the next wake-up
    assert got.desk.view.events == events.shape[0] - at_end
    if pieces > 1000:  # most events reached the view between ticks, not in a tick's batch
        assert got.tick_events < 0.5 * ref.tick_events

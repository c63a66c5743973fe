"""``decide``'s market in live mode: md micro-batches → receive-ordered events → the desk's wake-ups.

Why the engine's backtest loop drives a live desk: the desk reads book tops, features and a touch, and
wakes on its decision tick; :class:`~tradeplane.engine.sim.runner.BacktestRun` already builds all of that
incrementally over arrays (numba book, tops per depth message, ticks ``batch_ms`` apart). Fed with no
orders it is only the market clock and book, exactly as the backtester and paper mode feed the desk, so a
live decision equals the backtest's over the same events until execution makes them differ.

Release (:class:`LiveFeed`): events go out up to the frontier — the oldest of the symbols' newest receive
times — at once, with no fixed hold-back. A symbol that has been silent for ``max_wait_ns`` of wall time
(on the ingest clock, which stamps ``ingest_ts``) stops holding the others back; if it speaks again with
older receive times, those events are moved up to what was released (counted in :attr:`LiveFeed.late`),
because a live desk cannot revisit a decision.

Wake-ups: the loop advances to the released frontier, so the tick at local time ``T`` runs as soon as an
event received at ``T`` or later has been released — the batch then holds every event up to ``T``. Between
ticks the book and tops catch up with every release (:meth:`BacktestRun.catch_up`), and so do the desk's
features when decide passes ``observe`` (``DeskRuntime.on_market``), so a tick processes only the events of the
last fetch before it decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

from ...engine.events import EventArray
from ...engine.sim.runner import BacktestConfig, BacktestRun, Context, MarketBatch, Records, Strategy
from ..bus.mdbatch import MdBatch
from ..paper.feed import MarketFeed

Clock = Callable[[], int]
_MIN = int(np.iinfo(np.int64).min)


class LiveFeed(MarketFeed):
    """:class:`MarketFeed` whose release waits for a quiet symbol at most ``max_wait_ns`` of wall time."""

    def __init__(self, instruments: Mapping[tuple[str, str], int], *, max_wait_ns: int,
                 clock: Clock = time.time_ns) -> None:  # fmt: skip
        super().__init__(instruments, start_wait_ns=max_wait_ns)
        self.max_wait_ns = int(max_wait_ns)
        self.clock = clock
        self.late = 0  #: events received (ingest_ts) before what had already been released
        self.newest_exchange_ts = _MIN  #: of every event released so far

    def add(self, batch: MdBatch) -> bool:
        if not super().add(batch):
            return False
        sid = self.instruments[(batch.venue, batch.symbol)]
        queued = self._pending[sid]
        if queued and self.frontier != _MIN:
            its = queued[-1]["ingest_ts"]
            early = its < self.frontier
            if early.any():  # a quiet symbol speaking after we released past it: at the release
                self.late += int(early.sum())
                its[early] = self.frontier
        return True

    def _limit(self) -> int | None:
        if not self._last:
            return None
        cutoff = self.clock() - self.max_wait_ns
        assert self._first_seen is not None
        if len(self._last) < len(self._pending) and self._first_seen > cutoff:
            return None  # a symbol that sent nothing yet gets max_wait of wall time to do so
        recent = [t for t in self._last.values() if t > cutoff]
        return min(recent) if recent else max(self._last.values())

    def take(self) -> EventArray:
        out = super().take()
        if out.shape[0]:
            self.newest_exchange_ts = max(self.newest_exchange_ts, int(out["exchange_ts"].max()))
        return out


DeskCall = Callable[[Context, MarketBatch], None]
MarketCall = Callable[[EventArray, Records], None]


class _Wakeups:
    """The backtest loop's Strategy: every wake-up is handed on (the desk call lives in ``decide``)."""

    def __init__(self, call: DeskCall) -> None:
        self.call = call

    def on_batch(self, ctx: Context, batch: MarketBatch) -> None:
        self.call(ctx, batch)


class _ObservedWakeups(_Wakeups):
    """:class:`_Wakeups` that also hands on the market between wake-ups (a ``MarketObserver``)."""

    def __init__(self, call: DeskCall, observe: MarketCall) -> None:
        super().__init__(call)
        self.on_market = observe


class MarketClock:
    """The feed and an order-less :class:`BacktestRun` over it: :meth:`advance` releases what arrived and
    runs every wake-up up to the frontier, calling ``call(ctx, batch)`` for each (``ctx.touch`` is the
    book as received). With ``observe``, what is released between wake-ups goes to ``observe(events, tops)``
    at once and each wake-up's batch holds only the rest (the desk's features catch up between ticks)."""

    def __init__(self, feed: LiveFeed, config: BacktestConfig, call: DeskCall,
                 observe: MarketCall | None = None) -> None:  # fmt: skip
        self.feed, self.config = feed, config
        self.strategy: Strategy = _Wakeups(call) if observe is None else _ObservedWakeups(call, observe)
        self.run: BacktestRun | None = None

    def advance(self) -> int:
        """Release, feed and run; returns the number of events released."""
        events = self.feed.take()
        n = int(events.shape[0])
        if n:
            if self.run is None:
                self.run = BacktestRun(events, self.strategy, self.config)
            else:
                self.run.extend(events)
        if self.run is not None and n:
            self.run.advance(self.feed.local_frontier)
            self.run.catch_up(self.feed.local_frontier)  # the next tick then waits only for what comes after
        return n
